"""ScopeActor: one per scope, evaluating its automations in event order; Scopes routes to them."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import anyio
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectSendStream

from runhook.config.runtime import Runtime
from runhook.config.settings import Automation, Settings
from runhook.core import constants
from runhook.core.acks import Ticket
from runhook.core.durations import describe
from runhook.core.events import ArtifactEvent, Event, RunEvent, RunMetrics, RunState
from runhook.core.executions import Job, artifact_context, execution_row, new_id, run_context
from runhook.core.metrics import Metrics
from runhook.core.scopes import scope_keys
from runhook.delivery.actor import Deliveries
from runhook.evaluate.runbook import Outcome, RunBook, pack
from runhook.store.database import Statement, Store, Write
from runhook.store.statements import (
    CLEAR_LOG,
    FORGET_RUN,
    INSERT_EVENT_ID,
    INSERT_EXECUTION,
    LOG_METRICS,
    UPSERT_FLAG,
    UPSERT_RUN,
    UPSERT_WINDOW,
)
from runhook.triggers.artifact import occurrences
from runhook.triggers.crossing import SKIP

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


class ScopeActor:
    """Owns one scope's automations (and, for projects, its runs' state). Events
    arrive in order through a bounded inbox; evaluation is synchronous and pure,
    and the executions it produces go to the writer in one unit with the state
    they change, so a commit either records both or neither."""

    def __init__(self, scope: str, automations: list[Automation], store: Store,
                 deliveries: Deliveries, metrics: Metrics | None = None) -> None:
        self.scope = scope
        self._metrics = metrics
        self.automations = automations
        self._store = store
        self._deliveries = deliveries
        self.inbox: MemoryObjectSendStream[Item]
        self.inbox, self._receive = anyio.create_memory_object_stream[Item](constants.INBOX_SIZE)
        self.executions = 0
        self.book = RunBook(automations)
        self._statements: list[Statement] = []  # durable run state the current event changed
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
        book = RunBook(self.automations)
        book.restore(await self._store.run_state(self.scope),
                     {a.name: a.digest for a in self.automations}, time.time())
        self.book = book
        log.info("scope %s: restored %d runs from the database", self.scope, len(book.runs))

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
        now = time.time()
        stop = len(items)
        for index in range(start, len(items)):
            event, event_time, line_no, ticket = items[index]
            self._statements = []
            try:
                rows, event_jobs = self.evaluate(event, event_time, now)
            except Exception as exc:  # a bug in one evaluation must not stop the scope
                log.exception("scope %s: evaluating line %d failed", self.scope, line_no)
                ticket.errors[line_no] = f"internal error evaluating the event: {exc!r}"
                stop = index
                break
            if rows:
                self._statements.append((INSERT_EXECUTION, rows))
                self.executions += len(rows)
                jobs.extend(event_jobs)
            if event.id is not None:
                # The id commits with what the event caused here, or not at all.
                self._statements.append((INSERT_EVENT_ID, [(event.id, self.scope, now)]))
            for sql, params in self._statements:
                grouped.setdefault(sql, []).extend(params)
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

    async def _resync(self) -> None:
        await self._settled.wait()
        self._diverged = False
        failures = self._failures
        await self._restore()
        self._book_failures = failures

    async def _checkpoint(self, request: Checkpoint) -> None:
        statements: list[Statement] = [(CLEAR_LOG, [(self.scope,)])]
        dirty = [self.book.runs[r] for r in self.book.dirty if r in self.book.runs]
        windows = self.book.checkpoint()
        if windows:
            statements.append((UPSERT_WINDOW, [(self.scope, *row) for row in windows]))
        if dirty:
            statements.append((UPSERT_RUN, [(self.scope, r.run_id, r.name, r.user, r.state,
                                             r.last_seen, r.ended_at) for r in dirty]))
        if request.evict:
            gone = self.book.evict(time.time(), request.ttl)
            for sql in FORGET_RUN:
                if gone:
                    statements.append((sql, [(self.scope, run_id) for run_id in gone]))
            if gone:
                log.info("scope %s: evicted %d runs", self.scope, len(gone))
        if len(statements) > 1 or request.evict:
            # A barrier: the log it clears must not be reordered with later log rows.
            # If it fails the windows it held are only in memory: resync as well.
            await self._submit(Write(statements, barrier=True))

    def reconfigure(self, automations: list[Automation]) -> None:
        """Keep the run state of automations whose definition did not change."""
        kept = {a.name: a.digest for a in automations}
        changed = {a.name for a in self.automations if kept.get(a.name) != a.digest}
        self.book.forget(changed)
        self.book.configure(automations)
        self.automations = automations

    def _committed(self, tickets: list[Ticket], jobs: list[Job]) -> Any:
        def committed(error: str | None) -> None:
            for ticket in tickets:
                ticket.done(error)
            if error is None:
                for job in jobs:
                    self._deliveries.offer(job)
        return committed

    def evaluate(self, event: Event, event_time: float,
                 now: float) -> tuple[list[tuple[Any, ...]], list[Job]]:
        """The execution rows an event causes in this scope, and the jobs to deliver."""
        rows: list[tuple[Any, ...]] = []
        jobs: list[Job] = []
        if isinstance(event, ArtifactEvent):
            found = occurrences(event)
            for automation in self.automations:
                checker = automation.artifact
                if not automation.enabled or checker is None:
                    continue
                for occurrence in found:
                    if not checker.matches(event, occurrence):
                        continue
                    execution_id = new_id(now)
                    context = artifact_context(event, occurrence, automation.name,
                                               execution_id, event_time)
                    self._record(rows, jobs, automation, event, occurrence.kind, context, now)
        elif isinstance(event, RunEvent):
            self._run_event(event, event_time, now, rows, jobs)
        return rows, jobs

    def _run_event(self, event: RunEvent, event_time: float, now: float,
                   rows: list[tuple[Any, ...]], jobs: list[Job]) -> None:
        if isinstance(event, RunMetrics):
            outcome: Outcome = self.book.metrics(event, now)
        else:
            assert isinstance(event, RunState)
            outcome = self.book.state(event, now)
        run = outcome.run
        if run is None:
            return
        if outcome.logged:
            self._statements.append((LOG_METRICS, [(self.scope, run.run_id, run.name, run.user,
                                                    pack(outcome.logged))]))
        if outcome.state_changed:
            self._statements.append((UPSERT_RUN, [(self.scope, run.run_id, run.name, run.user,
                                                   run.state, run.last_seen, run.ended_at)]))
        if outcome.flags:
            digests = {a.name: a.digest for a in self.automations}
            self._statements.append((UPSERT_FLAG, [
                (self.scope, run.run_id, name, digests[name], int(active), fired_at)
                for name, active, fired_at in outcome.flags]))
        for firing in outcome.firings:
            automation = firing.automation
            execution_id = new_id(now)
            context = run_context(event, automation.name, automation.kind, execution_id,
                                  event_time, run.state, firing.description,
                                  firing.metric, firing.values)
            if firing.action == SKIP:
                reason = (f"cooldown: fired less than {describe(automation.cooldown)} ago "
                          f"({describe(firing.cooldown_left)} left)")
                self._record(rows, jobs, automation, event, automation.kind, context, now,
                             "SKIPPED", reason, run.run_id)
            else:
                self._record(rows, jobs, automation, event, automation.kind, context, now,
                             run_id=run.run_id)

    def _record(self, rows: list[tuple[Any, ...]], jobs: list[Job], automation: Automation,
                event: Event, kind: str, context: dict[str, Any], now: float,
                state: str | None = None, reason: str | None = None,
                run_id: str | None = None) -> None:
        action = automation.action
        if state is None:
            state = "PENDING" if action.integration is not None else "FINISHED"
            if action.integration is None:
                reason = "recorded only (action kind = none)"
        execution_id = context["execution_id"]
        if self._metrics is not None:
            self._metrics.execution(automation.name, state)
        rows.append(execution_row(execution_id, automation.name, self.scope, kind, event,
                                  action.kind, action.integration, state, reason, context, now,
                                  run_id))
        # DEBUG: at thousands a second a line each would cost a third of the firing
        # rate; `runhook history` has every execution and the INFO log a summary.
        log.debug("execution %s created: %s %s in %s -> %s", execution_id, automation.name,
                  kind, self.scope, state)
        if state == "PENDING" and action.integration is not None:
            jobs.append(Job(execution_id, automation.name, action.integration, context, 0, now))


class Scopes:
    """Routes events to the actors of the scopes that have automations, creating
    each actor on the first event that needs it."""

    def __init__(self, runtime: Runtime, store: Store, deliveries: Deliveries,
                 tg: TaskGroup) -> None:
        self._runtime = runtime
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
                                   self._runtime.metrics)
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
