"""IdSource: how evaluation names the executions it creates (one machine's default here)."""

from __future__ import annotations

from typing import Protocol

from runhook.core.executions import new_id


class IdSource(Protocol):
    """Execution ids. On one machine unique ones from this process; in a cluster ids
    derived from their cause, so another owner evaluating the same thing again names
    its executions alike (cluster/scopes.py's StreamIds)."""

    def start(self, cause: str, at: float | None = None) -> None:
        """The ids that follow are caused by `cause` (the scope and a stream sequence, or
        a timer's key); `at`: the time to name them by, else the `now` they are made at."""

    def new_id(self, now: float | None = None) -> str:
        """The next execution id, made at `now`."""


class ProcessIds:
    """One machine: `ex_` + milliseconds + a sequence + randomness (core/executions.py's
    new_id); a cause changes nothing, each id is unique in the process already."""

    __slots__ = ()

    # The function itself, not a method calling it: an id costs no extra frame.
    new_id = staticmethod(new_id)

    def start(self, cause: str, at: float | None = None) -> None:
        pass


PROCESS_IDS = ProcessIds()
