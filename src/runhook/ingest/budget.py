"""One budget for the bytes every connection (socket and HTTPS) has read and whose
events are not yet committed: over it, every reader waits (backpressure); nothing
read is ever dropped."""

from __future__ import annotations

from collections import deque
from functools import partial

import anyio

from runhook.core import constants
from runhook.core.acks import Ticket

# A read this small, from a connection with nothing in flight, waits at the head of
# the line: a heartbeat or a single event is not queued behind a chunk of every
# connection flooding (each costs the budget this much at most).
SMALL_READ = 16 * 1024


class Budget:
    """Bytes in flight, for the whole daemon. A reader asks for room after each read
    and before its lines are admitted, so admitted work passes the limit by one read
    at most; while it waits it reads nothing more (one read held, 256 KiB at most).
    The bytes are released when the commit of the events they held resolves (at once
    for lines that needed none: errors, queries). A hang-up ends nothing early: its
    bytes stay charged until their commit, so clients that send and leave cannot
    pile up work past the budget either."""

    def __init__(self, limit: int = constants.INGEST_BUDGET_BYTES) -> None:
        self.limit = limit
        self.used = 0
        self.peak = 0  # the most ever in flight: under limit + READ_CHUNK
        self.waits = 0  # reads that waited for room
        self._waiters: deque[anyio.Event] = deque()
        self._passing = False  # a waiter was woken and has not been charged yet

    async def room(self, first: bool = False) -> None:
        """Return once the budget has room. Waiters are let in one at a time, first
        come first served (`first`: ahead of the others): each one let in is charged
        before the next is woken, so a crowd of waiters cannot all pass on the same
        room."""
        if self.used < self.limit and not self._waiters and not self._passing:
            return
        self.waits += 1
        event = anyio.Event()
        if first:
            self._waiters.appendleft(event)
        else:
            self._waiters.append(event)
        try:
            await event.wait()
        except BaseException:
            if event.is_set():
                self._passing = False
                self._wake()  # woken but cancelled (a drain): the next one gets the room
            else:
                self._waiters.remove(event)
            raise
        # Charged by the caller before its next await, which wakes the next waiter.
        self._passing = False

    def charge(self, size: int) -> None:
        self.used += size
        self.peak = max(self.peak, self.used)
        self._wake()

    def release(self, size: int) -> None:
        self.used -= size
        self._wake()

    def _wake(self) -> None:
        if self._waiters and self.used < self.limit and not self._passing:
            self._passing = True
            self._waiters.popleft().set()


class Flow:
    """One connection's bytes: charged as read, and handed to the answers-to-be they
    became, which release them once committed. `tail` is the part of a line still
    arriving, which stays charged to the connection until the line is complete."""

    __slots__ = ("budget", "held", "outstanding", "tail")

    def __init__(self, budget: Budget) -> None:
        self.budget = budget
        self.held = 0
        self.tail = 0
        self.outstanding = 0  # handed to items whose commits are not done yet

    async def room(self, size: int) -> None:
        """Wait for room before the `size` bytes just read are admitted."""
        await self.budget.room(first=size <= SMALL_READ and not self.outstanding
                               and not self.held)

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
            self.outstanding += cost
            ticket.future.add_done_callback(partial(self._released, cost))

    def _released(self, cost: int, _: object) -> None:
        self.outstanding -= cost
        self.budget.release(cost)

    def close(self) -> None:
        self.budget.release(self.held)
        self.held = 0
