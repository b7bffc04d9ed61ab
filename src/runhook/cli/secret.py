"""`runhook secret new`: a fresh Standard Webhooks signing secret."""

from __future__ import annotations

import argparse
import base64
import secrets
from typing import Any

from runhook.config.secrets import signing_key

# Standard Webhooks: "whsec_" and the base64 of 24 to 64 random bytes. 32 bytes,
# as HMAC-SHA256's own block-size guidance and Svix's generated secrets use.
SECRET_BYTES = 32


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def cmd_new(args: argparse.Namespace) -> int:
    secret = new_secret()
    assert len(signing_key(secret)) == SECRET_BYTES  # what the daemon will sign with
    print(secret)
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("secret", help="signing secrets")
    actions = p.add_subparsers(dest="action", required=True)
    new = actions.add_parser("new", help="print a fresh whsec_ signing secret (Standard "
                                         "Webhooks: base64 of 32 random bytes)")
    new.set_defaults(func=cmd_new)
