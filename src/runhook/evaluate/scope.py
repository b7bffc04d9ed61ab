"""ScopeActor: one per scope, a thin loop around its Evaluator (inbox, batching, writes,
deliveries after the commit); Scopes routes events to them."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Protocol

import anyio
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectSendStream

from runhook.config.runtime import Runtime
from runhook.config.settings import Automation, Settings
from runhook.core import constants
from runhook.core.acks import Ticket
from runhook.core.events import Event, RunEvent
from runhook.core.executions import ROW_AUTOMATION, ROW_ID, ROW_KIND, ROW_STATE, Job
from runhook.core.metrics import Metrics
from runhook.core.scopes import scope_keys
from runhook.delivery.actor import Deliveries
from runhook.evaluate.evaluator import Evaluator
from runhook.evaluate.runbook import RunBook
from runhook.store.database import Store, Write
from runhook.store.statements import INSERT_EXECUTION
from runhook.triggers.silences import Silences

log = logging.getLogger("runhook.scope")


class Checkpoint:
    """An inbox item asking the actor to write its metric windows (and evict
    stale runs). Going through the inbox keeps it in order with the events."""

    def __init__(self, evict: bool = False, ttl: float = 0.0) -> None:
        self.evict = evict
        self.ttl = ttl


# A batch of (event, event time, line number) with the ticket of its chunk; or a checkpoint.
Batch = list[tuple[Event, float, int]]
Item = tuple[Batch, Ticket] | tuple[Checkpoint, None]


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
                 silences: Silences | None = None) -> None:
        self.scope = scope
        self._metrics = metrics
        self._store = store
        self._deliveries = deliveries
        self.inbox: MemoryObjectSendStream[Item]
        self.inbox, self._receive = anyio.create_memory_object_stream[Item](constants.INBOX_SIZE)
        self.executions = 0
        self.evaluator = Evaluator(scope, automations, silences)
        # A failed write leaves the book ahead of the database: the next batch is
        # evaluated only after every outstanding write has settled and the book
        # was reloaded from what is committed, so a client's retry of a refused
        # event finds the state from before it (and a crossing still fires).
        self._outstanding = 0
        self._settled = asyncio.Event()
        self._settled.set()
        self._diverged = False
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

    async def run(self) -> None:
        await self._restore()
        async with self._receive:
            async for batch, ticket in self._receive:
                if self._diverged:
                    await self._resync()
                if isinstance(batch, Checkpoint):
                    await self._checkpoint(batch)
                    continue
                assert ticket is not None
                # Let the other connections' chunks of this loop turn arrive, then
                # take every batch waiting: many small chunks (many clients) cost
                # one write instead of one each, for one loop turn of latency.
                await asyncio.sleep(0)
                work = [(batch, ticket)]
                checkpoint = None
                while len(work) < constants.INBOX_SIZE:
                    try:
                        more, more_ticket = self._receive.receive_nowait()
                    except (anyio.WouldBlock, anyio.EndOfStream):
                        break
                    if isinstance(more, Checkpoint):
                        checkpoint = more  # after this work, as it came after it
                        break
                    work.append((more, more_ticket))  # type: ignore[arg-type]
                await self._evaluate(work)
                if checkpoint is not None:
                    await self._checkpoint(checkpoint)
        await self._checkpoint(Checkpoint())  # a graceful stop leaves no log to replay

    async def _restore(self) -> None:
        if not self.book.tracks_runs:
            return
        self.evaluator.restore(await self._store.run_state(self.scope), time.time())
        log.info("scope %s: restored %d runs from the database", self.scope, len(self.book.runs))

    async def _submit(self, write: Write) -> None:
        """Submit a write that carries run state; a failure marks the book diverged."""
        then = write.on_commit
        book = self._book_failures
        write.valid = lambda: self._failures == book
        self._outstanding += 1
        self._settled.clear()

        def settled(error: str | None) -> None:
            self._outstanding -= 1
            if error is not None:
                self._diverged = True
                self._failures += 1
            if self._outstanding == 0:
                self._settled.set()
            if then is not None:
                then(error)
        write.on_commit = settled
        await self._store.submit(write)

    async def _evaluate(self, work: list[tuple[Batch, Ticket]]) -> None:
        items = [(e, t, n, ticket) for batch, ticket in work for e, t, n in batch]
        start = 0
        while start < len(items):
            stop = await self._evaluate_run(items, start)
            if stop == len(items):
                return
            # items[stop] raised half-way: the book may hold part of what it did.
            # Take it back from what is committed (which has everything before it)
            # before the next event is evaluated, so a retry finds the old state.
            if isinstance(items[stop][0], RunEvent):
                await self._resync()
            start = stop + 1

    async def _evaluate_run(self, items: list[tuple[Event, float, int, Ticket]],
                            start: int) -> int:
        """Evaluate items from `start` up to the first that fails (or the end) and
        submit what they caused as one write; returns where it stopped."""
        # Statements grouped by SQL, first-seen order kept: each table's rows keep
        # event order, and the work costs one executemany per table.
        grouped: dict[str, list[Any]] = {}
        jobs: list[Job] = []
        evaluate = self.evaluator.evaluate
        now = time.time()
        stop = len(items)
        for index in range(start, len(items)):
            event, event_time, line_no, ticket = items[index]
            try:
                rows, statements, event_jobs = evaluate(event, event_time, now)
            except Exception as exc:  # a bug in one evaluation must not stop the scope
                log.exception("scope %s: evaluating line %d failed", self.scope, line_no)
                ticket.fail(line_no, f"internal error evaluating the event: {exc!r}",
                            None if event.id is None else (event.id, self.scope))
                stop = index
                break
            if rows:
                grouped.setdefault(INSERT_EXECUTION, []).extend(rows)
                jobs.extend(event_jobs)
            for sql, params in statements:
                grouped.setdefault(sql, []).extend(params)
        created = grouped.get(INSERT_EXECUTION)
        if created:
            self._created(created)
        tickets = list({id(t): t for *_, t in items[start:stop + 1]}.values())
        if stop < len(items):
            later = {id(t) for *_, t in items[stop + 1:]}
            for ticket in tickets:
                if id(ticket) in later:
                    ticket.pending += 1  # its events go in this write and a later one
        if not grouped:
            for ticket in tickets:
                ticket.done()
        else:
            # Flags, cooldowns, logged values and ids commit with the executions.
            await self._submit(Write(list(grouped.items()), self._committed(tickets, jobs)))
        return stop

    def _created(self, rows: list[tuple[Any, ...]]) -> None:
        """Count and log the executions a batch created (they commit with it or not at all)."""
        self.executions += len(rows)
        if self._metrics is not None:
            for row in rows:
                self._metrics.execution(row[ROW_AUTOMATION], row[ROW_STATE])
        # DEBUG: at thousands a second a line each would cost a third of the firing
        # rate; `runhook history` has every execution and the INFO log a summary.
        if log.isEnabledFor(logging.DEBUG):
            for row in rows:
                log.debug("execution %s created: %s %s in %s -> %s", row[ROW_ID],
                          row[ROW_AUTOMATION], row[ROW_KIND], self.scope, row[ROW_STATE])

    async def _resync(self) -> None:
        await self._settled.wait()
        self._diverged = False
        failures = self._failures
        await self._restore()
        self._book_failures = failures

    async def _checkpoint(self, request: Checkpoint) -> None:
        statements, evicted = self.evaluator.checkpoint(time.time(), request.evict, request.ttl)
        if evicted:
            log.info("scope %s: evicted %d runs", self.scope, len(evicted))
        if len(statements) > 1 or request.evict:
            # A barrier: the log it clears must not be reordered with later log rows.
            # If it fails the windows it held are only in memory: resync as well.
            await self._submit(Write(statements, barrier=True))

    def reconfigure(self, automations: list[Automation]) -> None:
        """Keep the run state of automations whose definition did not change."""
        self.evaluator.reconfigure(automations)

    def _committed(self, tickets: list[Ticket], jobs: list[Job]) -> Any:
        def committed(error: str | None) -> None:
            for ticket in tickets:
                ticket.done(error, self.scope)
            if error is None:
                for job in jobs:
                    self._deliveries.offer(job)
        return committed


class Scopes:
    """Routes events to the actors of the scopes that have automations, creating
    each actor on the first event that needs it."""

    def __init__(self, runtime: Runtime, store: Store, deliveries: Deliveries,
                 tg: TaskGroup, silences: Silences | None = None) -> None:
        self._runtime = runtime
        self._silences = silences
        self._store = store
        self._deliveries = deliveries
        self._tg = tg
        self.actors: dict[str, ScopeActor] = {}

    def targets(self, event: Event) -> list[ScopeActor]:
        by_scope = self._runtime.settings.by_scope
        found = []
        for key in scope_keys(event):
            if key not in by_scope:
                continue
            actor = self.actors.get(key)
            if actor is None:
                actor = ScopeActor(key, by_scope[key], self._store, self._deliveries,
                                   self._runtime.metrics, self._silences)
                self.actors[key] = actor
                self._tg.start_soon(actor.run, name=f"scope {key}")
            found.append(actor)
        return found

    def reconfigure(self, settings: Settings) -> None:
        """After a reload: every actor takes its scope's new automation list."""
        for key, actor in self.actors.items():
            actor.reconfigure(settings.by_scope.get(key, []))

    async def checkpoint(self, evict: bool, ttl: float) -> None:
        for actor in list(self.actors.values()):
            await actor.inbox.send((Checkpoint(evict, ttl), None))

    def close(self) -> None:
        """No more events: each actor finishes its inbox, then returns."""
        for actor in self.actors.values():
            actor.inbox.close()
