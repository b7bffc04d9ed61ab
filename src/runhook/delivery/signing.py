"""Standard Webhooks and W&B signatures: pure functions of secret, id, time and body."""

from __future__ import annotations

import base64
import hmac

_PREFIX = "whsec_"


def signing_key(secret: str) -> bytes:
    """The HMAC key a secret stands for: `whsec_<base64>` as Standard Webhooks
    issues them (decoded), anything else used as its UTF-8 bytes."""
    if secret.startswith(_PREFIX):
        try:
            return base64.b64decode(secret[len(_PREFIX):], validate=True)
        except ValueError:
            raise ValueError("signing secret starts with whsec_ but is not base64") from None
    return secret.encode()


def standard_signature(keys: list[bytes], msg_id: str, timestamp: int, body: bytes) -> str:
    """`webhook-signature`: one `v1,<base64>` per key, space-separated, so a receiver
    holding either the old or the new secret verifies during a rotation."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return " ".join("v1," + base64.b64encode(hmac.digest(key, signed, "sha256")).decode()
                    for key in keys)


def wandb_signature(key: bytes, body: bytes) -> str:
    """`X-Wandb-Signature`: base64 HMAC-SHA256 of the body alone."""
    return base64.b64encode(hmac.digest(key, body, "sha256")).decode()
