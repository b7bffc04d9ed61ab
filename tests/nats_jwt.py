"""NATS decentralised auth made by hand for tests/test_cluster_security.py (no `nsc`
here): an operator, its system account and runhook's account, and users' .creds
files, as JWTs signed with NKeys (nkeys, the [cluster] extra's signer)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

import nkeys

UNLIMITED = {key: -1 for key in ("subs", "data", "payload", "imports", "exports", "conn",
                                 "leaf", "mem_storage", "disk_storage", "streams", "consumer")}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def keypair(prefix: int) -> tuple[bytes, Any]:
    """A new seed of that kind and its key pair."""
    seed = nkeys.encode_seed(os.urandom(32), prefix)
    return seed, nkeys.from_seed(bytearray(seed))


def jwt(issuer: Any, subject: Any, name: str, nats: dict[str, Any]) -> str:
    """A v2 claim about `subject`, signed by `issuer` (jti: the claims' SHA-256)."""
    claims: dict[str, Any] = {"iat": int(time.time()), "iss": issuer.public_key.decode(),
                              "name": name, "sub": subject.public_key.decode(),
                              "nats": {**nats, "version": 2}}
    claims["jti"] = base64.b32encode(hashlib.sha256(
        json.dumps(claims, sort_keys=True).encode()).digest()).decode().rstrip("=")
    signed = (f"{_b64(json.dumps({'typ': 'JWT', 'alg': 'ed25519-nkey'}).encode())}."
              f"{_b64(json.dumps(claims).encode())}")
    return f"{signed}.{_b64(issuer.sign(signed.encode()))}"


def creds(path: Path, account: Any, name: str) -> Path:
    """A user of `account` (unlimited), as the .creds file nsc writes."""
    seed, user = keypair(nkeys.PREFIX_BYTE_USER)
    token = jwt(account, user, name, {"type": "user", "pub": {}, "sub": {},
                                      **{k: -1 for k in ("subs", "data", "payload")}})
    path.write_text(f"-----BEGIN NATS USER JWT-----\n{token}\n------END NATS USER JWT------\n\n"
                    f"-----BEGIN USER NKEY SEED-----\n{seed.decode()}\n"
                    "------END USER NKEY SEED------\n")
    return path


def operator_mode() -> tuple[str, Any]:
    """nats-server configuration trusting a new operator, with a system account and
    one account with JetStream; and that account's key pair, to sign users with."""
    _, operator = keypair(nkeys.PREFIX_BYTE_OPERATOR)
    _, system = keypair(nkeys.PREFIX_BYTE_ACCOUNT)
    _, account = keypair(nkeys.PREFIX_BYTE_ACCOUNT)
    system_key = system.public_key.decode()
    accounts = {system_key: jwt(operator, system, "SYS", {"type": "account"}),
                account.public_key.decode(): jwt(operator, account, "RUNHOOK", {
                    "type": "account", "limits": {**UNLIMITED, "wildcards": True}})}
    preload = ", ".join(f'{key}: "{token}"' for key, token in accounts.items())
    operator_jwt = jwt(operator, operator, "test", {"type": "operator",
                                                    "system_account": system_key})
    return (f'operator: "{operator_jwt}"\nresolver: MEMORY\nsystem_account: "{system_key}"\n'
            f"resolver_preload: {{ {preload} }}\n"), account
