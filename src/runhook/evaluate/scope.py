"""ScopeActor: one per scope, a thin loop around its Evaluator (inbox, batching, writes,
deliveries after the commit); Scopes routes events to them."""

from __future__ import annotations

import logging
from typing import Any, Protocol

import anyio
import anyio.lowlevel
from anyio.streams.memory import MemoryObjectSendStream

from runhook.config.settings import Automation, ScopeSettings
from runhook.core import constants
from runhook.core.acks import Ticket, id_place
from runhook.core.bounds import AtBound, hit
from runhook.core.clock import Clock, SystemClock
from runhook.core.events import RunEvent, RunMetrics
from runhook.core.executions import ExecutionRow, Job
from runhook.core.metrics import Metrics
from runhook.evaluate.caused import NOTHING, ONLY_LOGGED
from runhook.evaluate.evaluator import Evaluator
from runhook.evaluate.ids import IdSource
from runhook.evaluate.inbox import Batch, Checkpoint, Item, Streamed, Submit, Wake, rest
from runhook.evaluate.runbook import RunBook
from runhook.store.database import Store, Write
from runhook.store.statements import INSERT_EXECUTION, INSERT_GROUPED
from runhook.triggers.silences import Silences

log = logging.getLogger("runhook.scope")
# How a line whose evaluation raised is refused (cluster mode tells it from a failed commit).
EVALUATION_FAILED = "internal error evaluating the event"


class Offers(Protocol):
    """Where committed executions go to be delivered (delivery's Deliveries)."""

    def offer(self, job: Job) -> None: ...


class ScopeActor:
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
        self.evaluator.restore(state, self.clock.wall(), self.clock.monotonic())
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

    def _prepare(self, work: list[tuple[Batch | Streamed, Ticket]], first_batch: int,
                 first_item: int) -> tuple[Write | None, tuple[int, int] | None, bool]:
        """Evaluate as _evaluate_run says; returns the write (None: nothing to write,
        the tickets' parts are done), where to go on, and whether the book must be
        reloaded (an event failed half-way)."""
        # Statements grouped by SQL, first-seen order kept: each table's rows keep
        # event order, and the work costs one executemany per table.
        grouped: dict[str, list[Any]] = {}
        jobs: list[Job] = []
        logged: list[RunMetrics] = []  # their values went into rings: one log blob
        evaluate, ids, scope = self.evaluator.evaluate, self.evaluator.ids, self.scope
        clock_now = self.clock.wall(), self.clock.monotonic()
        parts: list[tuple[Ticket, Batch]] = []  # each ticket's events in this write
        failed: tuple[int, int] | None = None
        failed_batch: Batch = []
        failed_run = False
        for index in range(first_batch, len(work)):
            batch_or_streamed, ticket = work[index]
            received: list[float] | None = None
            if isinstance(batch_or_streamed, Streamed):
                batch, received = batch_or_streamed
            else:
                batch = batch_or_streamed
            now, mono = clock_now
            start = first_item if index == first_batch else 0
            parts.append((ticket, batch if start == 0 else batch[start:]))
            for position, (event, event_time, line_no) in enumerate(parts[-1][1], start):
                if received is not None:
                    # Named by its place in the stream and its publisher's time: an
                    # owner evaluating it again names what it causes alike.
                    now = mono = received[position]
                    ids.start(f"{scope}|{line_no}")
                try:
                    caused = evaluate(event, event_time, now, mono)
                except AtBound as exc:  # refused before it changed anything: no reload
                    hit(exc.bound, f"scope {self.scope}: line {line_no}: {exc}")
                    ticket.fail(line_no, str(exc), None if event.id is None
                                else (event.id, id_place(self.scope, event.location)))
                    continue
                except Exception as exc:  # a bug in one evaluation must not stop the scope
                    log.exception("scope %s: evaluating line %d failed", self.scope, line_no)
                    ticket.fail(line_no, f"{EVALUATION_FAILED}: {exc!r}",
                                None if event.id is None
                                else (event.id, id_place(self.scope, event.location)))
                    failed, failed_batch = (index, position), batch
                    failed_run = isinstance(event, RunEvent)
                    break
                if caused is ONLY_LOGGED:  # the common case: values in rings, nothing else
                    logged.append(event)  # type: ignore[arg-type]
                    continue
                if caused is NOTHING:
                    continue
                rows, statements, event_jobs, was_logged = caused
                if was_logged:
                    logged.append(event)  # type: ignore[arg-type]
                if rows:
                    grouped.setdefault(INSERT_EXECUTION, []).extend(rows)
                    jobs.extend(event_jobs)
                for sql, params in statements:
                    grouped.setdefault(sql, []).extend(params)
            if failed is not None:
                break
        if logged:
            sql, params = self.evaluator.log(logged)
            grouped[sql] = list(params)
        for sql in (INSERT_EXECUTION, INSERT_GROUPED):
            created = grouped.get(sql)
            if created:
                self._created(created)
        after: tuple[int, int] | None = None
        if failed is not None:
            index, position = failed
            ticket = work[index][1]
            start = first_item if index == first_batch else 0
            # The failed one is refused already.
            parts[-1] = (ticket, failed_batch[start:position + 1])
            if position + 1 < len(failed_batch):
                after = (index, position + 1)
                ticket.pending += 1  # its events go in this write and a later one
            elif index + 1 < len(work):
                after = (index + 1, 0)
        write = None
        if not grouped:
            for ticket, _ in parts:
                ticket.done()
        else:
            # Flags, cooldowns, logged values and ids commit with the executions.
            write = Write(list(grouped.items()), self._committed(parts, jobs))
        # An event that failed half-way may have changed runs or digest windows.
        resync = failed is not None and (failed_run or self.evaluator.keeps_state)
        return write, after, resync

    def _created(self, rows: list[ExecutionRow]) -> None:
        """Count and log the executions a batch created (they commit with it or not at all)."""
        self.executions += len(rows)
        if self._metrics is not None:
            for row in rows:
                self._metrics.execution(row.automation, row.state)
        # DEBUG: at thousands a second a line each would cost a third of the firing
        # rate; `runhook history` has every execution and the INFO log a summary.
        if log.isEnabledFor(logging.DEBUG):
            for row in rows:
                log.debug("execution %s created: %s %s in %s -> %s", row.id,
                          row.automation, row.event_kind, self.scope, row.state)

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

    def _committed(self, parts: list[tuple[Ticket, Batch]], jobs: list[Job]) -> Any:
        """The write's callback: each ticket's part is over; its jobs go to delivery
        once committed. On failure only the lines and ids this write carried are refused.
        It keeps those, not the events, which are then freed while still in the CPU's
        cache rather than at the commit, milliseconds later (0.2-0.4 us a line less)."""
        carried = [(ticket, [line_no for _, _, line_no in batch],
                    [(e.id, id_place(self.scope, e.location)) for e, _, _ in batch
                     if e.id is not None])
                   for ticket, batch in parts]

        def committed(error: str | None) -> None:
            for ticket, lines, keys in carried:
                if error is None:
                    ticket.done()
                else:
                    ticket.done(error, lines, keys)
            if error is None:
                for job in jobs:
                    self._deliveries.offer(job)
        return committed
