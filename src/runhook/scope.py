"""ScopeActor: one per scope, evaluating its automations in event order; Scopes routes to them."""

from __future__ import annotations

import logging
import time
from typing import Any, Protocol

import anyio
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from runhook import constants
from runhook.acks import Ticket
from runhook.delivery.actor import Deliveries, Job
from runhook.events import ArtifactEvent, Event
from runhook.executions import artifact_context, execution_row, new_id
from runhook.scopes import scope_keys
from runhook.settings import Automation, Settings
from runhook.store import INSERT_EXECUTION, Store, Write
from runhook.triggers.artifact import occurrences

log = logging.getLogger("runhook.scope")

Item = tuple[Event, Ticket, float]  # the event, its ticket, its event time


class Runtime(Protocol):
    @property
    def settings(self) -> Settings: ...


class ScopeActor:
    """Owns one scope's automations (and, for projects, its runs' state). Events
    arrive in order through a bounded inbox; evaluation is synchronous and pure,
    and the executions it produces go to the writer in one unit with the state
    they change, so a commit either records both or neither."""

    def __init__(self, scope: str, automations: list[Automation], store: Store,
                 deliveries: Deliveries) -> None:
        self.scope = scope
        self.automations = automations
        self._store = store
        self._deliveries = deliveries
        self.inbox: MemoryObjectSendStream[Item]
        self.inbox, self._receive = anyio.create_memory_object_stream[Item](constants.INBOX_SIZE)
        self.executions = 0

    async def run(self) -> None:
        async with self._receive:
            async for event, ticket, event_time in self._receive:
                try:
                    rows, jobs = self.evaluate(event, event_time, time.time())
                except Exception as exc:  # a bug in one evaluation must not stop the scope
                    log.exception("scope %s: evaluating %s failed", self.scope, type(event).__name__)
                    ticket.done(f"internal error evaluating the event: {exc!r}")
                    continue
                if not rows:
                    ticket.done()
                    continue
                self.executions += len(rows)
                await self._store.submit(Write([(INSERT_EXECUTION, rows)],
                                               self._committed(ticket, jobs)))

    def _committed(self, ticket: Ticket, jobs: list[Job]) -> Any:
        def committed(error: str | None) -> None:
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
        return rows, jobs

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
        rows.append(execution_row(execution_id, automation.name, self.scope, kind, event,
                                  action.kind, action.integration, state, reason, context, now,
                                  run_id))
        log.info("execution %s created: %s %s in %s -> %s", execution_id, automation.name, kind,
                 self.scope, state)
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
                actor = ScopeActor(key, by_scope[key], self._store, self._deliveries)
                self.actors[key] = actor
                self._tg.start_soon(actor.run, name=f"scope {key}")
            found.append(actor)
        return found

    def reconfigure(self, settings: Settings) -> None:
        """After a reload: every actor takes its scope's new automation list."""
        for key, actor in self.actors.items():
            actor.automations = settings.by_scope.get(key, [])

    def close(self) -> None:
        """No more events: each actor finishes its inbox, then returns."""
        for actor in self.actors.values():
            actor.inbox.close()
