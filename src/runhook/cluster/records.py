"""The history stream's records, checked whole before SQLite sees them: a record that
is not one of ours (another shape, a NaN time, a state the table does not take) is
refused alone, so it never fails the commit of the records around it."""

from __future__ import annotations

import math
from typing import Annotated, Any

import msgspec

from runhook.core.executions import STATES, ExecutionRow, State, grouped_row
from runhook.store.database import Statement
from runhook.store.statements import (
    INSERT_EXECUTION,
    INSERT_GROUPED,
    MIRROR_ATTEMPT,
    MIRROR_UPDATE,
    REDELIVER,
)

_Int = Annotated[int, msgspec.Meta(ge=0, le=2**62)]
# Finite, and a time or duration SQLite stores as given (NaN would be NULL there,
# and fail NOT NULL; an infinity is no time).
_Float = Annotated[float, msgspec.Meta(ge=-1e15, le=1e15)]


class Foreign(ValueError):
    """A history record that is not one of ours; `kind` is what it claimed to be."""

    def __init__(self, kind: str, problem: str) -> None:
        super().__init__(f"{kind} record: {problem}")
        self.kind = kind


class _Attempt(msgspec.Struct, array_like=True):
    execution_id: str
    number: Annotated[int, msgspec.Meta(ge=1, le=2**62)]
    started_at: _Float
    duration_ms: _Float
    status: _Int | None
    error: str | None
    response: str | None


class _Update(msgspec.Struct, array_like=True):
    state: State
    reason: str | None
    updated_at: _Float
    next_attempt_at: _Float | None
    attempts: _Int
    id: str


class _Redelivery(msgspec.Struct, array_like=True):
    reason: str
    updated_at: _Float
    next_attempt_at: _Float
    id: str


def statements(data: bytes) -> list[Statement]:
    """The statements that apply one record; raises Foreign for any other."""
    try:
        record = msgspec.msgpack.decode(data, type=list[Any])
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise Foreign("unreadable", str(exc)) from None
    kind = record[0] if record and isinstance(record[0], str) else "unknown"
    try:
        if kind == "created" and len(record) == 2:  # a commit's executions, in one record
            rows = msgspec.convert(record[1], list[list[Any]])
            return [_created(row) for row in rows]
        if kind == "attempt" and len(record) == 4:
            return _attempt(record)
        if kind == "attempts" and len(record) == 2:  # attempts batched (attempts.py)
            return [s for one in msgspec.convert(record[1], list[list[Any]])
                    for s in _attempt(one)]
        if kind == "redeliver" and len(record) == 2:  # back to PENDING, a fresh schedule
            return [(REDELIVER, [msgspec.structs.astuple(one) for one in
                                 msgspec.convert(record[1], list[_Redelivery])])]
    except (msgspec.ValidationError, ValueError, TypeError) as exc:
        raise Foreign(kind, str(exc)) from None
    raise Foreign(kind if kind in ("created", "attempt", "attempts", "redeliver")
                  else "unknown", "not a created, attempt(s) or redeliver record")


def _attempt(record: list[Any]) -> list[Statement]:
    """["attempt", attempt, update, execution]: the execution first (ignored when
    there: its own record may come later), the attempt, the execution's new state."""
    if len(record) != 4 or record[0] != "attempt":
        raise ValueError("an attempt record is [\"attempt\", attempt, update, execution]")
    created = _created(msgspec.convert(record[3], list[Any]))
    attempt = msgspec.structs.astuple(msgspec.convert(record[1], _Attempt))
    update = msgspec.structs.astuple(msgspec.convert(record[2], _Update))
    return [created, (MIRROR_ATTEMPT, [attempt]), (MIRROR_UPDATE, [update])]


def _created(values: list[Any]) -> Statement:
    """An ExecutionRow (or, with a 16th value, a GroupedRow) as the table takes it."""
    if len(values) not in (15, 16):
        raise ValueError(f"an execution has 15 or 16 fields, not {len(values)}")
    row = msgspec.convert(values[:15], ExecutionRow)
    if row.state not in STATES:
        raise ValueError(f"state {row.state!r} is not one of {', '.join(STATES)}")
    for name, value in (("created_at", row.created_at), ("updated_at", row.updated_at),
                        ("next_attempt_at", row.next_attempt_at)):
        if value is not None and not (math.isfinite(value) and abs(value) <= 1e15):
            raise ValueError(f"{name} is {value!r}, not a time")
    try:
        msgspec.json.decode(row.context, type=dict[str, Any])
    except (msgspec.DecodeError, msgspec.ValidationError):
        raise ValueError("context is not a JSON object") from None
    if len(values) == 15:
        return (INSERT_EXECUTION.if_new, [row])
    digest = values[15]
    if not isinstance(digest, str):
        raise TypeError("digest_id is not a string")
    return (INSERT_GROUPED.if_new, [grouped_row(row, digest)])
