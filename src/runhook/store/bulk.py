"""A batch's rows in few statements: an INSERT as one multi-row VALUES, an UPDATE
as one statement over json_each.

`executemany` steps once per row, and CPython's sqlite3 releases the GIL around
every step. Beside the busy event loop, the writer thread then waited for the GIL
once per row, and the loop was interrupted once per row (measured on 2,000-row
batches: 2.2 us a row alone, 2 ms a row beside a busy thread). One statement takes
the GIL back once for many rows. An INSERT binds its rows as parameters of one
`VALUES (...), (...)`: SQLite stores them as executemany would (blobs, NaN, NULs
and all), and reads no JSON (over json_each, an executions row cost its writer
thread 15 us, as VALUES 7 us, executemany 10 us), and nothing is checked or
encoded on the event loop first. An UPDATE reads its rows from one JSON array,
unless they hold what JSON cannot carry (a blob, a non-finite float) or name a
row twice (one UPDATE ... FROM would apply only one of them): those keep
`executemany`. Pure: SQL in, SQL out."""

from __future__ import annotations

import functools
import itertools
import math
import re
import sqlite3
from collections.abc import Sequence
from typing import Any

import msgspec

from runhook.store.statements import LOG_METRICS

_encode = msgspec.json.Encoder().encode
# Rows in one step: the GIL is handed over once per chunk instead of once per row.
CHUNK = 500


def _variable_limit() -> int:
    """How many parameters one statement may bind in this SQLite (999 before 3.32)."""
    with sqlite3.connect(":memory:") as db:
        return db.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)


VARIABLES = _variable_limit()
# An INSERT's one VALUES tuple: plain `?` and literals, nothing nested, no `?NNN`.
_ROW = re.compile(r"^(INSERT (?:OR \w+ )?INTO \w+(?: \([^()]*\))?) VALUES (\([^()?]*(?:\?(?!\d)[^()?]*)*\))(.*)$",
                  re.DOTALL)
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


def statements(sql: str, rows: Sequence[Sequence[Any]]) -> list[tuple[str, Sequence[Any]]] | None:
    """(SQL, its parameters) for each step that applies `rows`, in order; or None
    when they must go through executemany."""
    if len(rows) < 2:
        return None
    values = _row_form(sql)
    if values is not None:
        return _inserts(values, rows)
    return _json_updates(sql, rows)


@functools.lru_cache(maxsize=64)
def _row_form(sql: str) -> tuple[str, str, str, int] | None:
    """(head, one row's VALUES tuple, tail, its parameters) of a one-row INSERT."""
    match = _ROW.match(sql)
    if match is None:
        return None
    head, row, tail = match.groups()
    return head, row, tail, row.count("?")


@functools.lru_cache(maxsize=256)
def _rows_sql(form: tuple[str, str, str, int], count: int) -> str:
    head, row, tail, _ = form
    return f"{head} VALUES {','.join(itertools.repeat(row, count))}{tail}"


def _inserts(form: tuple[str, str, str, int], rows: Sequence[Sequence[Any]]
             ) -> list[tuple[str, Sequence[Any]]] | None:
    """Steps of one multi-row VALUES each, rows in order (so of two upserts of one
    key the later wins, as with executemany). Full steps of `per` rows, the rest in
    steps of a power of two: a statement has few shapes, each prepared once and
    kept in the connection's statement cache (a 500-row VALUES takes longer to
    prepare than to run)."""
    width = form[3]
    if width == 0 or len(rows[0]) != width:
        return None  # executemany says what is wrong
    per = max(1, min(CHUNK, VARIABLES // width))
    steps: list[tuple[str, Sequence[Any]]] = []
    start, left = 0, len(rows)
    while left:
        count = per if left >= per else 1 << (left.bit_length() - 1)
        steps.append((_rows_sql(form, count),
                      list(itertools.chain.from_iterable(rows[start:start + count]))))
        start += count
        left -= count
    return steps


def _json_updates(sql: str, rows: Sequence[Sequence[Any]]) -> list[tuple[str, Sequence[Any]]] | None:
    """An UPDATE's steps over json_each: up to CHUNK rows as JSON text each. Text, not
    bytes: SQLite's JSON functions refuse blobs. Chunks bound the memory one step
    takes (SQLite parses the whole array): one large batch had raised the daemon's
    peak RSS by 30 MB."""
    form = json_form(sql)
    if form is None or not _json_safe(rows):
        return None
    steps: list[tuple[str, Sequence[Any]]] = []
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
