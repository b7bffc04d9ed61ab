"""What the store's reads hand back: executions, attempts and due work, each mapped
from its row in one place."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import msgspec

from runhook.core.executions import ExecutionRow

# An execution as history reads it: the columns a firing inserts (ExecutionRow's
# fields, named once there), then those its deliveries and its digest change.
_FIELDS = (*ExecutionRow._fields, "attempts", "round_start", "digest_id")
_COLUMNS = ", ".join(_FIELDS)


class Execution(msgspec.Struct, kw_only=True):
    """One execution as history shows it."""

    id: str
    automation: str
    scope: str
    event_kind: str
    event_type: str
    event_id: str | None
    action_kind: str
    integration: str | None
    state: str
    reason: str | None
    context: dict[str, Any]
    run_id: str | None
    created_at: float
    updated_at: float
    next_attempt_at: float | None
    attempts: int
    round_start: int = 0
    digest_id: str | None = None  # GROUPED: the digest execution that carries it


class Attempt(msgspec.Struct, kw_only=True):
    number: int
    started_at: float
    duration_ms: float
    status: int | None
    error: str | None
    response: str | None


class Due(NamedTuple):
    """A PENDING execution as a delivery actor takes it up."""

    id: str
    automation: str
    context: dict[str, Any]
    attempts: int
    created_at: float
    round_start: int


_context = msgspec.json.Decoder(dict[str, Any]).decode


def _execution(row: Sequence[Any]) -> Execution:
    values = dict(zip(_FIELDS, row))
    values["context"] = _context(values["context"])
    return Execution(**values)


_ATTEMPT_COLUMNS = "number, started_at, duration_ms, status, error, response"


def _attempt(row: Sequence[Any]) -> Attempt:
    """An attempts row, selected as _ATTEMPT_COLUMNS."""
    return Attempt(**dict(zip(_ATTEMPT_COLUMNS.split(", "), row)))
