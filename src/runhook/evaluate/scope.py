"""ScopeActor: one per scope, a thin loop around its Evaluator (inbox, timers, the writes
in flight, the resync after a failure); a batch's evaluation into one write is
scope_write.py's, and Scopes (routing.py) routes events to the actors."""

from __future__ import annotations

import logging
from typing import Any

import anyio
import anyio.lowlevel
from anyio.streams.memory import MemoryObjectSendStream

from runhook.config.settings import Automation, ScopeSettings
from runhook.core import constants
from runhook.core.acks import Ticket
from runhook.core.clock import Clock, SystemClock
from runhook.core.metrics import Metrics
from runhook.evaluate.evaluator import Evaluator
from runhook.evaluate.ids import IdSource
from runhook.evaluate.inbox import Batch, Checkpoint, Item, Streamed, Submit, Wake, rest
from runhook.evaluate.runbook import RunBook
from runhook.evaluate.scope_write import EVALUATION_FAILED, BatchWrites, Offers
from runhook.store.database import Store, Write
from runhook.store.statements import INSERT_EXECUTION, INSERT_GROUPED
from runhook.triggers.silences import Silences

log = logging.getLogger("runhook.scope")
# Cluster mode and the tests take these from here, with the actor.
__all__ = ["EVALUATION_FAILED", "Checkpoint", "Offers", "ScopeActor"]


class ScopeActor(BatchWrites):
    """Owns one scope's Evaluator. Events arrive in order through a bounded inbox;
    the evaluator says what each caused, and that goes to the writer in one unit
    with the state it changed, so a commit records both or neither; the jobs are
    offered to delivery only once it committed."""

    def __init__(self, scope: str, automations: list[Automation], store: Store,
                 deliveries: Offers, metrics: Metrics | None = None,
                 silences: Silences | None = None, settings: ScopeSettings | None = None,
                 clock: Clock | None = None, ids: IdSource | None = None) -> None:
        """`clock` and `ids`: this machine's, unless given (cluster mode's read the stream)."""
        self.scope = scope
        # Wall time names what happened; deadlines wait on the monotonic reading.
        self.clock = clock if clock is not None else SystemClock()
        self._metrics = metrics
        self._store = store
        self._deliveries = deliveries
        self.inbox: MemoryObjectSendStream[Item]
        self.inbox, self._receive = anyio.create_memory_object_stream[Item](constants.INBOX_SIZE)
        self.executions = 0
        self.evaluator = Evaluator(scope, automations, silences, settings, self.clock.monotonic(),
                                   ids=ids)
        # A failed write leaves the book ahead of the database: the next batch is
        # evaluated only after every outstanding write has settled and the book
        # was reloaded from what is committed, so a client's retry of a refused
        # event finds the state from before it (and a crossing still fires).
        self._outstanding = 0
        self._settled: anyio.Event | None = None  # made by a resync waiting for them
        self._diverged = False
        self._waiting_for: float | None = None  # the deadline the actor waits for
        # Writes that failed so far, and how many had when the book was last loaded
        # from the database. The actor evaluates ahead of its commits, so writes
        # computed from a book that a failed write left ahead of the database are
        # dropped by the writer: nothing built on a refused event commits.
        self._failures = 0
        self._book_failures = 0

    @property
    def automations(self) -> list[Automation]:
        return self.evaluator.automations

    @property
    def book(self) -> RunBook:
        return self.evaluator.book

    async def _next(self) -> Item | None:
        """The next inbox item, or None when the earliest timer is due first. Without
        timers (most scopes) a plain receive: no cancel scope per item."""
        deadline = self._waiting_for = self.evaluator.next_deadline()
        if deadline is None:
            return await self._receive.receive()
        with anyio.move_on_after(max(0.0, deadline - self.clock.monotonic())):
            # anyio's receive keeps an item it already took when the timeout hits.
            return await self._receive.receive()
        return None

    async def run(self) -> None:
        await self._restore()
        async with self._receive:
            while True:
                try:
                    item = await self._next()
                except anyio.EndOfStream:
                    break
                if item is not None and isinstance(item[0], Submit | Wake):
                    if isinstance(item[0], Submit):  # tracked already: before any resync
                        await self._store.submit(item[0].write)
                    continue  # a Wake: `take` set an earlier deadline; wait for that one
                if self._diverged:
                    await self._resync()
                if item is None:
                    await self._expire()
                    continue
                batch, ticket = item
                if isinstance(batch, Checkpoint):
                    await self._checkpoint(batch)
                    continue
                assert ticket is not None
                # Let the other connections' chunks of this loop turn arrive, then
                # take every batch waiting: many small chunks (many clients) cost
                # one write instead of one each, for one loop turn of latency.
                await anyio.lowlevel.checkpoint()
                work = [(batch, ticket)]
                checkpoint = None
                while len(work) < constants.INBOX_SIZE:
                    try:
                        more, more_ticket = self._receive.receive_nowait()
                    except (anyio.WouldBlock, anyio.EndOfStream):
                        break
                    if isinstance(more, Wake):
                        continue  # the deadline is looked at again after this work
                    if isinstance(more, Checkpoint | Submit):
                        checkpoint = more  # after this work, as it came after it
                        break
                    work.append((more, more_ticket))  # type: ignore[arg-type]
                await self._evaluate(work)
                if isinstance(checkpoint, Submit):
                    await self._store.submit(checkpoint.write)
                elif checkpoint is not None:
                    await self._checkpoint(checkpoint)
                deadline = self.evaluator.next_deadline()
                if deadline is not None and deadline <= self.clock.monotonic():
                    await self._expire()  # a busy inbox does not hold timers back
        await self._checkpoint(Checkpoint())  # a graceful stop leaves no log to replay

    async def _expire(self) -> None:
        """Timers that are due, evaluated like an event: what they cause commits in
        one write with the state they change, and is delivered once committed."""
        if self._diverged:
            await self._resync()
        try:
            caused = self.evaluator.expire(*self.clock.read())
        except Exception:  # a bug in one evaluation must not stop the scope
            log.exception("scope %s: evaluating timers failed", self.scope)
            self._diverged = True
            return
        rows, statements, jobs, _ = caused
        grouped: dict[str, list[Any]] = {}
        if rows:
            grouped[INSERT_EXECUTION] = list(rows)
            self._created(rows)
        for sql, params in statements:
            grouped.setdefault(sql, []).extend(params)
        if INSERT_GROUPED in grouped:
            self._created(grouped[INSERT_GROUPED])
        if grouped:
            await self._submit(Write(list(grouped.items()), self._committed([], jobs)))

    async def _restore(self) -> None:
        if not self.evaluator.keeps_state:
            return
        state = await self._store.run_state(self.scope)
        # One reading for both: two calls differ by microseconds in cluster mode (one
        # clock), which would move a restored run's last sign of life, and a crash's id.
        self.evaluator.restore(state, *self.clock.read())
        log.info("scope %s: restored %d runs from the database", self.scope, len(self.book.runs))

    async def _submit(self, write: Write) -> None:
        """Submit a write that carries run state; a failure marks the book diverged."""
        self._track(write)
        await self._store.submit(write)

    def _track(self, write: Write) -> None:
        """Count the write as outstanding until it settles; its failure diverges the book."""
        then = write.on_commit
        book = self._book_failures
        write.valid = lambda: self._failures == book
        self._outstanding += 1

        def settled(error: str | None) -> None:
            self._outstanding -= 1
            if error is not None:
                self._diverged = True
                self._failures += 1
            if self._outstanding == 0 and self._settled is not None:
                self._settled.set()
                self._settled = None
            if then is not None:
                then(error)
        write.on_commit = settled

    async def _evaluate(self, work: list[tuple[Batch | Streamed, Ticket]]) -> None:
        position: tuple[int, int] | None = (0, 0)
        while position is not None:
            position = await self._evaluate_run(work, *position)

    async def _evaluate_run(self, work: list[tuple[Batch | Streamed, Ticket]], first_batch: int,
                            first_item: int) -> tuple[int, int] | None:
        """Evaluate from work[first_batch][first_item] up to the first event that
        fails (or the end) and submit what they caused as one write; returns where
        to go on after a failure, None at the end."""
        write, after, resync = self._prepare(work, first_batch, first_item)
        if write is not None:
            await self._submit(write)
        if resync:
            # The failed event may have left part of what it did in the book. Take
            # it back from what is committed (which has everything before it)
            # before the next event is evaluated, so a retry finds the old state.
            await self._resync()
        return after

    def take(self, batch: Batch | Streamed, ticket: Ticket) -> bool:
        """Evaluate `batch` now, in the caller's turn, when the actor is idle: waiting
        on an empty inbox, its book in step with the database. Nothing can then be
        ahead of the batch, so this is what the actor would do next, without the
        inbox hand-over and task switch (with a hundred scopes in a read, those
        cost a third of ingest). False: the caller sends it to the inbox."""
        if self._diverged:
            return False
        stats = self._receive.statistics()
        if stats.tasks_waiting_receive != 1 or stats.current_buffer_used:
            return False
        write, after, resync = self._prepare([(batch, ticket)], 0, 0)
        if resync:
            self._diverged = True  # the actor reloads the book before its next batch
        if write is not None:
            self._track(write)
            try:
                self._store.submit_nowait(write)
            except anyio.WouldBlock:  # the writer is behind: the actor waits for it
                self.inbox.send_nowait((Submit(write), None))
        if after is not None:  # after a failed event: the rest, once the book is reloaded
            self.inbox.send_nowait((rest(batch, after[1]), ticket))
        deadline = self.evaluator.next_deadline()
        if deadline is not None and (self._waiting_for is None or deadline < self._waiting_for):
            # The actor waits for a later deadline (or none): have it look again.
            self.inbox.send_nowait((Wake(), None))
        return True

    async def _resync(self) -> None:
        if self._outstanding:
            self._settled = anyio.Event()
            await self._settled.wait()
        self._diverged = False
        failures = self._failures
        await self._restore()
        self._book_failures = failures

    async def _checkpoint(self, request: Checkpoint) -> None:
        statements, evicted = self.evaluator.checkpoint(
            self.clock.wall(), request.evict, request.ttl, self.clock.monotonic())
        if evicted:
            log.info("scope %s: evicted %d runs", self.scope, len(evicted))
        if statements:
            # A barrier: the log it clears must not be reordered with later log rows.
            # If it fails the windows it held are only in memory: resync as well.
            await self._submit(Write(statements, barrier=True))

    def reconfigure(self, automations: list[Automation],
                    settings: ScopeSettings | None = None) -> None:
        """Keep the run state of automations whose definition did not change."""
        self.evaluator.reconfigure(automations, settings)
