"""The metric log: values that went into rings since the last checkpoint, which a
restart replays in order. One blob per write, not a row per event (pure)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import msgspec

from runhook.core.events import ConfigValue, RunMetrics


class Logged(msgspec.Struct):
    """What replay reads of a logged event. Not strict: the blob holds the whole
    event as the wire carried it, and later versions may add fields to it."""

    run_id: str
    values: dict[str, float | None]
    run_name: str = ""
    user: str = ""
    group: str | None = None
    tags: list[str] | None = None
    config: dict[str, ConfigValue] | None = None


# msgpack, not JSON: it carries ±Infinity, and encodes the events' Structs as they
# are, in one call for the whole batch (the cheapest form the prototype measured).
_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(list[Logged]).decode
_decode_values = msgspec.msgpack.Decoder(dict[str, float]).decode
_decode_json = msgspec.json.Decoder(dict[str, float]).decode


def encode(events: Sequence[RunMetrics]) -> bytes:
    """A metric_batches blob: the events whose values went into rings, in order."""
    return _encode(events)


def decode(blob: bytes) -> list[Logged]:
    return _decode(blob)


def old_rows(rows: Sequence[tuple[str, str, str, str | bytes]]) -> Iterator[Logged]:
    """metric_log rows of versions before metric_batches, one event each: JSON text
    of {metric: value}, or msgpack (always before JSON text; with ±Infinity after)."""
    for run_id, name, user, data in rows:
        values = _decode_json(data) if isinstance(data, str) else _decode_values(data)
        yield Logged(run_id, dict(values), name, user)
