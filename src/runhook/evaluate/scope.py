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
from runhook.config.settings import Automation, ScopeSettings, Settings
from runhook.core import constants
from runhook.core.acks import Ticket
from runhook.core.events import Event, RunEvent, RunMetrics
from runhook.core.executions import ROW_AUTOMATION, ROW_ID, ROW_KIND, ROW_STATE, Job
from runhook.core.metrics import Metrics
from runhook.core.scopes import scope_keys
from runhook.delivery.actor import Deliveries
from runhook.evaluate.evaluator import NOTHING, ONLY_LOGGED, Evaluator
from runhook.evaluate.runbook import RunBook
from runhook.store.database import Store, Write
from runhook.store.statements import INSERT_EXECUTION
from runhook.triggers.silences import Silences

log = logging.getLogger("runhook.scope")
# Places (entity, project or registry) whose routes are remembered; past this the
# memo starts afresh (it only saves building scope strings).
ROUTES_REMEMBERED = 10_000


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
                 silences: Silences | None = None, settings: ScopeSettings | None = None) -> None:
        self.scope = scope
        self._metrics = metrics
        self._store = store
        self._deliveries = deliveries
        self.inbox: MemoryObjectSendStream[Item]
        self.inbox, self._receive = anyio.create_memory_object_stream[Item](constants.INBOX_SIZE)
        self.executions = 0
        self.evaluator = Evaluator(scope, automations, silences, settings, time.time())
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

    async def _next(self) -> Item | None:
        """The next inbox item, or None when the earliest timer is due first. Without
        timers (most scopes) a plain receive: no cancel scope per item."""
        deadline = self.evaluator.next_deadline()
        if deadline is None:
            return await self._receive.receive()
        with anyio.move_on_after(max(0.0, deadline - time.time())):
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
                deadline = self.evaluator.next_deadline()
                if deadline is not None and deadline <= time.time():
                    await self._expire()  # a busy inbox does not hold timers back
        await self._checkpoint(Checkpoint())  # a graceful stop leaves no log to replay

    async def _expire(self) -> None:
        """Timers that are due, evaluated like an event: what they cause commits in
        one write with the state they change, and is delivered once committed."""
        if self._diverged:
            await self._resync()
        try:
            caused = self.evaluator.expire(time.time())
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
        if grouped:
            await self._submit(Write(list(grouped.items()), self._committed([], jobs)))

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
        position: tuple[int, int] | None = (0, 0)
        while position is not None:
            position = await self._evaluate_run(work, *position)

    async def _evaluate_run(self, work: list[tuple[Batch, Ticket]], first_batch: int,
                            first_item: int) -> tuple[int, int] | None:
        """Evaluate from work[first_batch][first_item] up to the first event that
        fails (or the end) and submit what they caused as one write; returns where
        to go on after a failure, None at the end."""
        # Statements grouped by SQL, first-seen order kept: each table's rows keep
        # event order, and the work costs one executemany per table.
        grouped: dict[str, list[Any]] = {}
        jobs: list[Job] = []
        logged: list[RunMetrics] = []  # their values went into rings: one log blob
        evaluate = self.evaluator.evaluate
        now = time.time()
        parts: list[tuple[Ticket, Batch]] = []  # each ticket's events in this write
        failed: tuple[int, int] | None = None
        for index in range(first_batch, len(work)):
            batch, ticket = work[index]
            start = first_item if index == first_batch else 0
            parts.append((ticket, batch if start == 0 else batch[start:]))
            for position, (event, event_time, line_no) in enumerate(parts[-1][1], start):
                try:
                    caused = evaluate(event, event_time, now)
                except Exception as exc:  # a bug in one evaluation must not stop the scope
                    log.exception("scope %s: evaluating line %d failed", self.scope, line_no)
                    ticket.fail(line_no, f"internal error evaluating the event: {exc!r}",
                                None if event.id is None else (event.id, self.scope))
                    failed = (index, position)
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
        created = grouped.get(INSERT_EXECUTION)
        if created:
            self._created(created)
        after: tuple[int, int] | None = None
        if failed is not None:
            index, position = failed
            batch, ticket = work[index]
            start = first_item if index == first_batch else 0
            parts[-1] = (ticket, batch[start:position + 1])  # the failed one is refused already
            if position + 1 < len(batch):
                after = (index, position + 1)
                ticket.pending += 1  # its events go in this write and a later one
            elif index + 1 < len(work):
                after = (index + 1, 0)
        if not grouped:
            for ticket, _ in parts:
                ticket.done()
        else:
            # Flags, cooldowns, logged values and ids commit with the executions.
            await self._submit(Write(list(grouped.items()), self._committed(parts, jobs)))
        if failed is not None and isinstance(work[failed[0]][0][failed[1]][0], RunEvent):
            # The failed event may have left part of what it did in the book. Take
            # it back from what is committed (which has everything before it)
            # before the next event is evaluated, so a retry finds the old state.
            await self._resync()
        return after

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
        once committed. On failure only the lines and ids this write carried are refused."""
        def committed(error: str | None) -> None:
            for ticket, batch in parts:
                if error is None:
                    ticket.done()
                else:
                    ticket.done(error, [line_no for _, _, line_no in batch],
                                [(e.id, self.scope) for e, _, _ in batch if e.id is not None])
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
        # (entity, project, registry) -> the actors its events go to: the scope
        # strings are built once per place, not once per event.
        self._routes: dict[tuple[str, str | None, str | None], list[ScopeActor]] = {}

    def route(self, event: Event) -> list[ScopeActor]:
        """The actors of the scopes that have automations for where `event` happened."""
        place = (event.entity, event.project, event.registry)
        found = self._routes.get(place)
        if found is None:
            if len(self._routes) >= ROUTES_REMEMBERED:
                self._routes.clear()
            found = self._routes[place] = self.targets(event)
        return found

    def targets(self, event: Event) -> list[ScopeActor]:
        by_scope = self._runtime.settings.by_scope
        return [self._actor(key) for key in scope_keys(event) if key in by_scope]

    def _actor(self, key: str) -> ScopeActor:
        actor = self.actors.get(key)
        if actor is None:
            settings = self._runtime.settings
            actor = ScopeActor(key, settings.by_scope[key], self._store, self._deliveries,
                               self._runtime.metrics, self._silences, settings.scope(key))
            self.actors[key] = actor
            self._tg.start_soon(actor.run, name=f"scope {key}")
        return actor

    def start_timed(self) -> None:
        """Start now the actors of scopes whose automations keep deadlines (run health):
        they restore their runs and count deadlines from this start, with no event
        needed to wake them (a run that died with the old daemon is still seen)."""
        for key, automations in self._runtime.settings.by_scope.items():
            if any(a.run is not None and a.run.metric is None and a.enabled
                   for a in automations):
                self._actor(key)

    def reconfigure(self, settings: Settings) -> None:
        """After a reload: every actor takes its scope's new automation list."""
        self._routes.clear()  # scopes may have gained or lost automations
        for key, actor in self.actors.items():
            actor.reconfigure(settings.by_scope.get(key, []), settings.scope(key))
        self.start_timed()

    async def checkpoint(self, evict: bool, ttl: float) -> None:
        for actor in list(self.actors.values()):
            await actor.inbox.send((Checkpoint(evict, ttl), None))

    def close(self) -> None:
        """No more events: each actor finishes its inbox, then returns."""
        for actor in self.actors.values():
            actor.inbox.close()
