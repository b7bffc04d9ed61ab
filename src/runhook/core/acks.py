"""Tickets: events are acknowledged once every scope they reached has committed their executions."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

# An id as one scope accepted it: (event id, its place, see id_place).
Key = tuple[str, str]


def id_place(scope: str, location: str) -> str:
    """Where an event's id is recorded: the scope that evaluated it, and for a scope
    that spans places (`entity:E`) that scope and the event's own place, so a client
    that may write one project cannot make the same id a duplicate for another
    project's events (an attacker's review found it could). An event that reached
    no scope records `unscoped_place`; earlier versions wrote '*', which still
    stands for every place."""
    return scope if scope == location else f"{scope} {location}"


def unscoped_place(location: str) -> str:
    """Where the id of an event that reached no scope is recorded: a place no scope's
    id_place can be (no scope is named `unscoped`), so its resend is a duplicate until
    a reload adds a scope for it, and that scope then evaluates it. (It was the
    location itself, which is also the id_place of the project or registry scope a
    reload may add: that scope found the resend a duplicate and evaluated nothing.)"""
    return f"unscoped {location}"


class Ticket:
    """Counts down the parts of the work of one chunk of lines: one per scope actor
    it reached, one for the ids of events no scope took. A part that fails names
    its own lines and (id, scope) keys, so only those are refused; the lines of a
    part that committed are answered ok. The future resolves when every part is
    done: with None, or with the error of a part that named no lines (which then
    applies to every line)."""

    __slots__ = ("error", "errors", "failed", "future", "keys", "pending")

    def __init__(self, future: asyncio.Future[str | None], pending: int = 0) -> None:
        self.future = future
        self.pending = pending
        self.error: str | None = None
        self.errors: dict[int, str] = {}  # line -> why it was not accepted
        self.failed: set[Key] = set()  # keys not recorded
        self.keys: list[Key] = []  # every key this chunk claimed (settled when it resolves)

    def fail(self, line_no: int, error: str, key: Key | None = None) -> None:
        """One line not accepted (its evaluation raised): nothing of it recorded."""
        self.errors.setdefault(line_no, error)
        if key is not None:
            self.failed.add(key)

    def line_error(self, line_no: int) -> str | None:
        """Once resolved: why this line was not accepted, or None."""
        return self.error or self.errors.get(line_no)

    def done(self, error: str | None = None, lines: Iterable[int] | None = None,
             keys: Iterable[Key] = ()) -> None:
        """One part is over: committed (error None), or not, and then `lines` and
        `keys` are what it carried (lines None: all of the ticket's)."""
        if error is not None:
            if lines is None:
                self.error = self.error or error
            else:
                for line_no in lines:
                    self.errors.setdefault(line_no, error)
                self.failed.update(keys)
        self.pending -= 1
        if self.pending == 0 and not self.future.done():
            self.future.set_result(self.error)
