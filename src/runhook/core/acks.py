"""Tickets: events are acknowledged once every scope they reached has committed their executions."""

from __future__ import annotations

import asyncio


class Ticket:
    """Counts down the parts of the work of one chunk of lines (one per scope actor
    it reached, one for its idempotency ids); resolves its future at zero with None
    or the first error, which then applies to every event of the chunk (they were
    committed, or rolled back, together). `errors` holds errors of single lines."""

    __slots__ = ("error", "errors", "future", "pending")

    def __init__(self, future: asyncio.Future[str | None], pending: int) -> None:
        self.future = future
        self.pending = pending
        self.error: str | None = None
        self.errors: dict[int, str] = {}

    def done(self, error: str | None = None) -> None:
        if error is not None and self.error is None:
            self.error = error
        self.pending -= 1
        if self.pending == 0 and not self.future.done():
            self.future.set_result(self.error)
