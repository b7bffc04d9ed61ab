"""Standard Webhooks and W&B signatures: pure functions of secret, id, time and body."""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac


def _hmac_sha256(key: bytes, message: bytes) -> bytes:
    """Not `hmac.digest`: that one-shot releases the GIL for any length, and getting
    it back from the database thread cost up to a switch interval (5 ms) per request
    (measured: 1.3 us alone, 175 us beside a busy thread). A copy of a keyed HMAC
    object keeps the GIL for messages under 2 KiB and is faster anyway."""
    mac = _keyed(key).copy()
    mac.update(message)
    return mac.digest()


@functools.lru_cache(maxsize=64)
def _keyed(key: bytes) -> hmac.HMAC:
    return hmac.new(key, digestmod=hashlib.sha256)


def standard_signature(keys: list[bytes], msg_id: str, timestamp: int, body: bytes) -> str:
    """`webhook-signature`: one `v1,<base64>` per key, space-separated, so a receiver
    holding either the old or the new secret verifies during a rotation."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    if len(keys) == 1:  # the usual case, without a generator and a join (2 us a request)
        return "v1," + base64.b64encode(_hmac_sha256(keys[0], signed)).decode()
    return " ".join("v1," + base64.b64encode(_hmac_sha256(key, signed)).decode()
                    for key in keys)


def wandb_signature(key: bytes, body: bytes) -> str:
    """`X-Wandb-Signature`: base64 HMAC-SHA256 of the body alone."""
    return base64.b64encode(_hmac_sha256(key, body)).decode()
