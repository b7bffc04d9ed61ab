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


# An event that carries no group, tags or config, as its values and the identity
# fields replay reads: [run_id, values, run_name, user], a msgpack array with no
# field names (72 bytes an event of the ingest benchmark; the whole event, 188).
Compact = tuple[str, dict[str, float | None], str, str]

# msgpack, not JSON: it carries ±Infinity, and encodes the whole batch in one call.
_encode = msgspec.msgpack.Encoder().encode
# Entries are Compact arrays or maps (an event with group, tags or config, as the
# wire carried it; every entry of the versions before Compact).
_decode = msgspec.msgpack.Decoder(list[Compact | Logged]).decode
_decode_values = msgspec.msgpack.Decoder(dict[str, float]).decode
_decode_json = msgspec.json.Decoder(dict[str, float]).decode


def encode(events: Sequence[RunMetrics]) -> bytes:
    """A metric_batches blob: the events whose values went into rings, in order.
    Most are written Compact: the writer's work grows with the blob's bytes (a
    blob of whole events cost it 1.3 us a line of the ingest benchmark)."""
    return _encode([(e.run_id, e.values, e.run_name, e.user)
                    if e.group is None and e.tags is None and e.config is None else e
                    for e in events])


def decode(blob: bytes) -> list[Logged]:
    return [Logged(*entry) if entry.__class__ is tuple else entry  # type: ignore[misc]
            for entry in _decode(blob)]


def old_rows(rows: Sequence[tuple[str, str, str, str | bytes]]) -> Iterator[Logged]:
    """metric_log rows of versions before metric_batches, one event each: JSON text
    of {metric: value}, or msgpack (always before JSON text; with ±Infinity after)."""
    for run_id, name, user, data in rows:
        values = _decode_json(data) if isinstance(data, str) else _decode_values(data)
        yield Logged(run_id, dict(values), name, user)
