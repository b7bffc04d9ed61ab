"""A batch's rows in one statement: the rows as one JSON array, read with json_each.

`executemany` steps once per row, and CPython's sqlite3 releases the GIL around
every step. Beside the busy event loop, the writer thread then waited for the GIL
once per row, and the loop was interrupted once per row (measured on 2,000-row
batches: 2.2 us a row alone, 2 ms a row beside a busy thread). One statement over
json_each takes the GIL back once for the whole batch (12 us a row beside the busy
thread). Rows with blobs or non-finite floats (JSON has neither) and UPDATEs whose
batch names a row twice (one UPDATE ... FROM would apply only one of them) keep
`executemany`. Pure: SQL in, SQL out."""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Sequence
from typing import Any

import msgspec

from runhook.store.statements import LOG_METRICS

_encode = msgspec.json.Encoder().encode
# Rows in one step: the GIL is handed over once per chunk instead of once per row.
CHUNK = 500
_VALUES = re.compile(r"^(INSERT (?:OR \w+ )?INTO \w+ \([^)]*\)) VALUES \(([^)]*)\)(.*)$", re.DOTALL)
_UPDATE = re.compile(r"^UPDATE (\w+) SET (.*) WHERE (\w+) = \?$", re.DOTALL)


@functools.lru_cache(maxsize=64)
def json_form(sql: str) -> str | None:
    """The statement reading its rows from one JSON array parameter, or None when
    it has no such form. Rows are applied in array order (ORDER BY key), so of two
    upserts of one key in a batch the later wins, as with executemany."""
    insert = _VALUES.match(sql)
    if insert is not None:
        head, values, tail = insert.groups()
        return (f"{head} SELECT {_values(values)} FROM json_each(?) "
                f"WHERE true ORDER BY key{tail}")  # WHERE: the upsert parsing rule
    update = _UPDATE.match(sql)
    if update is not None:
        table, assignments, key = update.groups()
        n = assignments.count("?")
        return (f"UPDATE {table} SET {_assignments(assignments)} "
                f"FROM json_each(?) AS u WHERE {table}.{key} = u.value->>{n}")
    return None


def _values(values: str) -> str:
    """A VALUES list with each `?` replaced by the next array element, `value->>N`."""
    out, n = [], 0
    for part in (p.strip() for p in values.split(",")):
        if part == "?":
            out.append(f"value->>{n}")
            n += 1
        else:
            out.append(part)  # a literal, e.g. the 0 of `attempts`
    return ", ".join(out)


def _assignments(assignments: str) -> str:
    """SET assignments with each `?` replaced by the next array element, `u.value->>N`."""
    pieces = assignments.split("?")
    return "".join(f"{piece}u.value->>{i}" for i, piece in enumerate(pieces[:-1])) + pieces[-1]


def _json_safe(rows: Sequence[Sequence[Any]]) -> bool:
    """No blob, no ±Infinity or NaN (JSON cannot carry them) and no NUL in a text
    (json_each's `->>` would cut it there: `job\x00x` stored as `job`)."""
    for row in rows:
        for v in row:
            kind = type(v)
            if kind is bytes or (kind is float and not math.isfinite(v)) \
                    or (kind is str and "\x00" in v):  # value->> stops at a NUL
                return False
    return True


def statements(sql: str, rows: Sequence[Sequence[Any]]) -> list[tuple[str, tuple[str]]] | None:
    """(SQL, its one parameter: up to CHUNK rows as JSON text) for each step that
    applies `rows`, in order; or None when they must go through executemany. Text,
    not bytes: SQLite's JSON functions refuse blobs. Chunks bound the memory one
    step takes (SQLite parses the whole array): one large batch had raised the
    daemon's peak RSS by 30 MB."""
    if len(rows) < 2 or not _json_safe(rows):
        return None
    form = json_form(sql)
    if form is None:
        return None
    steps = []
    for start in range(0, len(rows), CHUNK):
        chunk = rows[start:start + CHUNK]
        if form.startswith("UPDATE") and len({row[-1] for row in chunk}) < len(chunk):
            return None
        steps.append((form, (_encode(chunk).decode(),)))
    return steps


def merged_logs(rows: Sequence[Sequence[Any]]) -> list[tuple[str, bytes]]:
    """LOG_METRICS rows of one batch, one row a scope: each blob is a msgpack array
    (evaluate/metric_log.py), and a scope's arrays in order make one array of all
    their entries. executemany releases the GIL around every row it steps, and
    waits for it after each while the event loop is busy: a row per scope per read
    was a few thousand a batch. Scopes keep their rows' order (replay reads a scope
    alone, by seq)."""
    parts: dict[str, list[bytes]] = {}
    counts: dict[str, int] = {}
    for scope, blob in rows:
        count, start = _array_header(blob)
        parts.setdefault(scope, []).append(blob[start:])
        counts[scope] = counts.get(scope, 0) + count
    return [(scope, _array_header_bytes(counts[scope]) + b"".join(blobs))
            for scope, blobs in parts.items()]


def merges(sql: str) -> bool:
    return sql == LOG_METRICS


def _array_header(blob: bytes) -> tuple[int, int]:
    """(entries, header length) of a msgpack array."""
    first = blob[0]
    if 0x90 <= first <= 0x9F:
        return first & 0x0F, 1
    if first == 0xDC:
        return int.from_bytes(blob[1:3], "big"), 3
    if first == 0xDD:
        return int.from_bytes(blob[1:5], "big"), 5
    raise ValueError(f"not a msgpack array: {blob[:1]!r}")


def _array_header_bytes(count: int) -> bytes:
    if count < 16:
        return bytes((0x90 | count,))
    if count < 1 << 16:
        return b"\xdc" + count.to_bytes(2, "big")
    return b"\xdd" + count.to_bytes(4, "big")
