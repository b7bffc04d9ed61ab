"""What an evaluation produces (Caused, Checkpointed) and the run state's rows as the
store keeps them: wall times, moved to and from the book's monotonic readings."""

from __future__ import annotations

from typing import Any, NamedTuple

from runhook.core.executions import ExecutionRow, Job
from runhook.core.identity import identity_row
from runhook.evaluate.run import TrackedRun
from runhook.store.database import Statement

Row = tuple[Any, ...]


class Caused(NamedTuple):
    """What one event caused in one scope. It all commits in one transaction or
    none of it does (with the event's id), and the jobs go out only after."""

    rows: list[ExecutionRow]  # executions
    statements: list[Statement]  # run rows, crossing flags, the event's id
    jobs: list[Job]  # executions to deliver
    logged: bool = False  # its values went into rings: the event joins the metric log


# Caused is built by tuple.__new__: NamedTuple's own __new__ is a Python function,
# 0.2 us more an event (1-2 % of the ingest and firing rates, measured).
make_caused = tuple.__new__
# What nearly every event causes, shared (callers never change them): nothing at
# all, or values in rings and nothing else.
NOTHING = make_caused(Caused, ([], [], [], False))
ONLY_LOGGED = make_caused(Caused, ([], [], [], True))


class Checkpointed(NamedTuple):
    """A checkpoint's statements (clear the log, windows, runs, forget the evicted)."""

    statements: list[Statement]
    evicted: list[str]  # run ids forgotten


def run_row(scope: str, run: TrackedRun, shift: float) -> Row:
    """A run's row, in UPSERT_RUN's column order; `shift` turns the book's monotonic
    readings into wall times (wall - monotonic now)."""
    ended_at = None if run.ended_at is None else run.ended_at + shift
    return (scope, run.run_id, run.name, run.user, run.state, run.last_seen + shift, ended_at,
            *identity_row(run), run.reason)


def shifted(rows: Any, columns: tuple[int, ...], shift: float) -> list[Any]:
    """Rows of the store with the times at `columns` moved by `shift` (None kept)."""
    if not shift:
        return list(rows)
    out = []
    for row in rows:
        moved = list(row)
        for column in columns:
            if moved[column] is not None:
                moved[column] += shift
        out.append(tuple(moved))
    return out


# The columns holding times in the store's run state (store.run_state's rows).
STORED_TIMES = {"runs": (4, 5), "flags": (4,), "groups": (3,), "digest_windows": (3, 4),
          "cooldowns": (3,)}
