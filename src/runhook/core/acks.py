"""Tickets: events are acknowledged once every scope they reached has committed their executions."""

from __future__ import annotations

import asyncio

# An id as one scope accepted it: (event id, scope key).
Key = tuple[str, str]


class Ticket:
    """Counts down the parts of the work of one chunk of lines: one per scope actor
    it reached, one for the ids of events no scope took. Each part is registered
    with its lines and (id, scope) keys, so a part that fails marks only its own
    lines and keys; the lines of a part that committed are answered ok. The future
    resolves when every part is done: with None, or with the error of a part that
    was never registered (which then applies to every line)."""

    __slots__ = ("error", "errors", "failed", "future", "parts", "pending")

    def __init__(self, future: asyncio.Future[str | None], pending: int = 0) -> None:
        self.future = future
        self.pending = pending
        self.error: str | None = None
        self.errors: dict[int, str] = {}  # line -> why it was not accepted
        self.failed: set[Key] = set()  # keys not recorded
        self.parts: dict[str, tuple[list[int], list[Key]]] = {}  # scope -> lines, keys

    def part(self, scope: str, line_no: int, key: Key | None) -> None:
        lines, keys = self.parts.setdefault(scope, ([], []))
        lines.append(line_no)
        if key is not None:
            keys.append(key)

    def fail(self, line_no: int, error: str, key: Key | None = None) -> None:
        """One line not accepted (its evaluation raised): nothing of it recorded."""
        self.errors.setdefault(line_no, error)
        if key is not None:
            self.failed.add(key)

    def line_error(self, line_no: int) -> str | None:
        """Once resolved: why this line was not accepted, or None."""
        return self.error or self.errors.get(line_no)

    def done(self, error: str | None = None, scope: str | None = None) -> None:
        """The part of `scope` is over: committed (error None) or not."""
        if error is not None:
            part = self.parts.get(scope) if scope is not None else None
            if part is None:
                self.error = self.error or error
            else:
                for line_no in part[0]:
                    self.errors.setdefault(line_no, error)
                self.failed.update(part[1])
        self.pending -= 1
        if self.pending == 0 and not self.future.done():
            self.future.set_result(self.error)
