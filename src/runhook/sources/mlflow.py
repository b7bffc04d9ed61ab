"""MLflow 3 model-registry webhooks: the signature as mlflow/webhooks/delivery.py makes
it, and the registry events mapped to wire events."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Mapping
from typing import Any

import msgspec

from runhook.config.remote import MlflowSource
from runhook.core.events import AliasAdded, ArtifactLinked, Event, TagAdded, TagRemoved

# MLflow's header names (mlflow/webhooks/constants.py); aiohttp's headers are
# case-insensitive, as HTTP's are.
SIGNATURE = "X-MLflow-Signature"
TIMESTAMP = "X-MLflow-Timestamp"
DELIVERY_ID = "X-MLflow-Delivery-Id"
VERSION = "v1"
# A delivery older or newer than this is refused: a captured request cannot be
# replayed later, and within the window its delivery id deduplicates it.
TOLERANCE_S = 300
# MLflow's ids are UUID4 strings; anything printable up to this length is taken
# (the id becomes part of an event id, at most 256 characters).
_DELIVERY = re.compile(r"[!-~]{1,128}")
_TIMESTAMP = re.compile(r"[0-9]{1,12}")


class Refused(Exception):
    """A delivery that is not MLflow's, or not now; the message never quotes a secret."""


def signature(secret: str, delivery_id: str, timestamp: str, body: bytes) -> bytes:
    """HMAC-SHA256 over `delivery_id.timestamp.body`, keyed by the secret's UTF-8
    bytes. MLflow signs the JSON text it then sends encoded as UTF-8, so the raw
    body bytes are exactly what it signed."""
    signed = f"{delivery_id}.{timestamp}.".encode() + body
    return hmac.new(secret.encode("utf-8"), signed, hashlib.sha256).digest()


def check_headers(headers: Mapping[str, str], now: float) -> tuple[str, str, str]:
    """(signature, delivery id, timestamp) when present, well formed and current;
    Refused otherwise. Checked before the body is read: a request without them
    holds no connection while it trickles a body."""
    given = headers.get(SIGNATURE)
    delivery_id = headers.get(DELIVERY_ID)
    timestamp = headers.get(TIMESTAMP)
    if not given or not delivery_id or not timestamp:
        raise Refused(f"missing {SIGNATURE}, {DELIVERY_ID} or {TIMESTAMP}")
    if not _DELIVERY.fullmatch(delivery_id):
        raise Refused(f"{DELIVERY_ID} is not a delivery id")
    if not _TIMESTAMP.fullmatch(timestamp):
        raise Refused(f"{TIMESTAMP} is not Unix seconds")
    if abs(now - int(timestamp)) > TOLERANCE_S:
        raise Refused(f"{TIMESTAMP} is more than {TOLERANCE_S // 60} minutes from now")
    return given, delivery_id, timestamp


def verify(secret: str, headers: Mapping[str, str], body: bytes, now: float) -> str:
    """The delivery id of a genuine, current delivery; Refused otherwise."""
    given, delivery_id, timestamp = check_headers(headers, now)
    expected = signature(secret, delivery_id, timestamp, body)
    matched = False
    # "v1,<base64>"; several space-separated signatures are tried (a rotation).
    for part in given.split()[:8]:
        version, _, value = part.partition(",")
        try:
            candidate = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            continue
        matched |= version == VERSION and hmac.compare_digest(candidate, expected)
    if not matched:
        raise Refused("signature does not match")
    return delivery_id


class Payload(msgspec.Struct):
    """MLflow's envelope: {"entity", "action", "timestamp", "data"}."""

    entity: str
    action: str
    data: dict[str, Any]


def event(source_name: str, source: MlflowSource, delivery_id: str, body: bytes) -> Event | None:
    """The wire event a delivery stands for, or None for an event runhook does not
    map (acknowledged and ignored). Its id comes from the delivery id, so a
    delivery MLflow retries (or anyone replays) is evaluated once. ValueError for
    a body that is not MLflow's shape."""
    try:
        payload = msgspec.json.decode(body, type=Payload)
    except msgspec.DecodeError as exc:
        raise ValueError(f"not an MLflow webhook payload: {exc}") from None
    data = payload.data
    kind = (payload.entity, payload.action)
    if kind not in _KINDS:
        return None
    try:
        common: dict[str, Any] = {
            "entity": source.entity, "registry": source.registry,
            "id": f"mlflow:{source_name}:{delivery_id}",
            "collection": str(data["name"]), "version": int(data["version"])}
        if kind == ("model_version", "created"):
            kind_class: type[Event] = ArtifactLinked
            common["source"] = str(data.get("source") or "")
        elif kind == ("model_version_alias", "created"):
            kind_class, common["alias"] = AliasAdded, str(data["alias"])
        elif kind == ("model_version_tag", "set"):
            kind_class, common["tag"] = TagAdded, f"{data['key']}={data.get('value', '')}"
        else:
            # A deleted tag's payload carries no value: the tag is its key alone.
            kind_class, common["tag"] = TagRemoved, str(data["key"])
        # Converted, not constructed: the wire's constraints (a non-empty name, a
        # version >= 0) hold for a webhook's event as for a line's.
        return msgspec.convert(common, kind_class)
    except (KeyError, TypeError, ValueError, msgspec.ValidationError) as exc:
        raise ValueError(f"{payload.entity}.{payload.action}: bad or missing field {exc}") \
            from None


_KINDS = {("model_version", "created"), ("model_version_alias", "created"),
          ("model_version_tag", "set"), ("model_version_tag", "deleted")}
