"""One budget for the bytes every connection (socket and HTTPS) has read and whose
events are not yet committed: over it, every reader waits (backpressure); nothing
read is ever dropped."""

from __future__ import annotations

from collections import deque
from functools import partial

import anyio

from runhook.core import constants
from runhook.core.acks import Ticket

# The least one read asks for while the budget is nearly spent: small enough that the
# readers let in together overshoot little, large enough that a line still arrives in
# a few reads.
MIN_READ = 16 * 1024


class Budget:
    """Bytes in flight, for the whole daemon. A reader asks for room before each read
    and is charged what it read; the bytes are released when the commit of the events
    they held resolves (or at once for lines that needed none: errors, queries). A
    hang-up ends nothing early: its bytes stay charged until their commit, so clients
    that send and leave cannot pile up work past the budget either."""

    def __init__(self, limit: int = constants.INGEST_BUDGET_BYTES) -> None:
        self.limit = limit
        self.used = 0
        self.peak = 0  # the most ever in flight: limit + reads let in together, at most
        self.waits = 0  # reads that waited for room
        self._waiters: deque[anyio.Event] = deque()

    def read_size(self) -> int:
        """How much the next read may take: what is left, within [MIN_READ, READ_CHUNK]."""
        return max(MIN_READ, min(constants.READ_CHUNK, self.limit - self.used))

    async def room(self) -> None:
        """Return once the budget has room; waiters are let in first come, first served."""
        if self.used < self.limit and not self._waiters:
            return
        self.waits += 1
        event = anyio.Event()
        self._waiters.append(event)
        try:
            await event.wait()
        finally:
            if not event.is_set():
                self._waiters.remove(event)  # cancelled while waiting (a drain)

    def charge(self, size: int) -> None:
        self.used += size
        self.peak = max(self.peak, self.used)

    def release(self, size: int) -> None:
        self.used -= size
        while self._waiters and self.used < self.limit:
            self._waiters.popleft().set()


class Flow:
    """One connection's bytes: charged as read, and handed to the answers-to-be they
    became, which release them once committed. `tail` is the part of a line still
    arriving, which stays charged to the connection until the line is complete."""

    __slots__ = ("budget", "held", "tail")

    def __init__(self, budget: Budget) -> None:
        self.budget = budget
        self.held = 0
        self.tail = 0

    def read(self, size: int) -> None:
        self.budget.charge(size)
        self.held += size

    def settle(self, ticket: Ticket | None) -> None:
        """The bytes read so far (but the tail) belong to the item just made: released
        when its ticket resolves, at once when it has none (nothing to commit)."""
        cost = self.held - self.tail
        if cost <= 0:
            return
        self.held -= cost
        if ticket is None or ticket.future.done():
            self.budget.release(cost)
        else:
            ticket.future.add_done_callback(partial(_release, self.budget, cost))

    def close(self) -> None:
        self.budget.release(self.held)
        self.held = 0


def _release(budget: Budget, cost: int, _: object) -> None:
    budget.release(cost)
