"""Tickets: an event is acknowledged once every scope it reached has committed its executions."""

from __future__ import annotations

import asyncio


class Ticket:
    """Counts down the parts of one event's work (one per scope actor, one for the
    idempotency id); resolves its future with None, or the first error, at zero."""

    __slots__ = ("future", "pending", "error")

    def __init__(self, future: asyncio.Future[str | None], pending: int) -> None:
        self.future = future
        self.pending = pending
        self.error: str | None = None

    def done(self, error: str | None = None) -> None:
        if error is not None and self.error is None:
            self.error = error
        self.pending -= 1
        if self.pending == 0 and not self.future.done():
            self.future.set_result(self.error)
