"""Router, what admission hands events to, and Scopes, the one-machine router: it routes
events to the scope actors that have automations for them, creating each actor on the
first event that needs it (a project's, too, when only an entity- or org-wide run
automation covers it)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol, TypeVar

import anyio
from anyio.abc import TaskGroup

from runhook.config.runtime import Runtime
from runhook.config.settings import Automation, Settings
from runhook.core.acks import Ticket
from runhook.core.events import Event
from runhook.delivery.actor import Deliveries
from runhook.evaluate.inbox import Batch, Checkpoint, Streamed
from runhook.evaluate.metadata import KEPT_EVENTS, Remembered, kept_entities
from runhook.evaluate.scope import ScopeActor
from runhook.store.database import Store
from runhook.triggers.silences import Silences

# Places (entity, project or registry) whose routes are remembered; past this the
# memo starts afresh (it only saves building scope strings).
ROUTES_REMEMBERED = 10_000


class Target(Protocol):
    """Where one scope's events go: its actor, or (cluster mode) its partition's subject."""

    @property
    def scope(self) -> str: ...


T = TypeVar("T", bound=Target)


class Router(Protocol[T]):
    """What admission hands events to: Scopes on one machine, the cluster's Publisher."""

    def route(self, event: Event) -> list[T]:
        """The targets of the scopes that have automations for where `event` happened."""
        ...

    async def hand(self, batches: dict[T, Batch], ticket: Ticket) -> None:
        """Each target's batch, in the order they came; `ticket` is done once every
        batch is (committed, or published), or refused."""
        ...


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
        # project -> (entity, actors) of the last event routed there: most projects'
        # names belong to one entity.
        self._by_project: dict[str, tuple[str, list[ScopeActor]]] = {}
        # Scopes that had an actor or stored runs: the projects an entity-wide run
        # automation covers have no entry in the configuration to find them by.
        self.seen: set[str] = set()
        self.remembered = Remembered()  # artifact versions' metadata, for every actor
        self.remembered.keep(kept_entities(runtime.settings.automations,
                                           runtime.settings.config.orgs))

    def route(self, event: Event) -> list[ScopeActor]:
        """The actors of the scopes that have automations for where `event` happened."""
        project = event.project
        if project is not None:  # by project name first: one string hashed, not a tuple
            found = self._by_project.get(project)
            if found is not None and found[0] == event.entity:
                if event.__class__ in KEPT_EVENTS and event.entity in self.remembered.kept:
                    return self._with_keeper(event, found[1])
                return found[1]
        place = (event.entity, project, event.registry)
        actors = self._routes.get(place)
        if actors is None:
            if len(self._routes) >= ROUTES_REMEMBERED:
                self._routes.clear()
                self._by_project.clear()
            actors = self._routes[place] = self.targets(event)
        if project is not None:
            self._by_project[project] = (event.entity, actors)
        if event.__class__ in KEPT_EVENTS and event.entity in self.remembered.kept:
            return self._with_keeper(event, actors)
        return actors

    def _with_keeper(self, event: Event, actors: list[ScopeActor]) -> list[ScopeActor]:
        """A creation or link also goes to its entity's scope, which keeps the metadata
        of its versions for their later events (evaluate/metadata.py), even when that
        scope has no automation of its own."""
        key = f"entity:{event.entity}"
        if any(actor.scope == key for actor in actors):
            return actors
        return [*actors, self._actor(key)]

    def targets(self, event: Event) -> list[ScopeActor]:
        return [self._actor(key) for key in self._runtime.settings.keys_of(event)]

    def _actor(self, key: str) -> ScopeActor:
        actor = self.actors.get(key)
        if actor is None:
            settings = self._runtime.settings
            actor = ScopeActor(key, settings.automations_of(key), self._store,
                               self._deliveries, self._runtime.metrics, self._silences,
                               settings.scope(key))
            actor.evaluator.remembered = self.remembered
            self.actors[key] = actor
            self.seen.add(key)
            self._tg.start_soon(actor.run, name=f"scope {key}")
        return actor

    @staticmethod
    async def hand(batches: Mapping[ScopeActor, Batch | Streamed], ticket: Ticket) -> None:
        """Each batch evaluated now by an idle actor, or into its inbox."""
        for actor, batch in batches.items():
            if actor.take(batch, ticket):  # evaluated now: the actor was idle
                continue
            try:
                # No yield to the loop per send while there is room (up to 100
                # actors a chunk); a full inbox makes us wait: backpressure.
                actor.inbox.send_nowait((batch, ticket))
            except anyio.WouldBlock:
                await actor.inbox.send((batch, ticket))

    def known(self) -> list[str]:
        """Every scope with automations that may have state: the configured ones, and
        the projects seen (stored runs, or an actor) that an entity-wide run automation covers."""
        settings = self._runtime.settings
        return [*settings.by_scope, *sorted(
            key for key in self.seen if key not in settings.by_scope and settings.covers(key))]

    async def load_seen(self) -> None:
        """The projects with runs in the database, before `start_timed`; and the kept
        artifact metadata, before any event is evaluated."""
        self.seen.update(await self._store.project_scopes())
        self.remembered.load(await self._store.artifact_metadata())

    def start_timed(self) -> None:
        """Start now the actors of scopes whose automations keep deadlines (run health,
        digests): they restore their runs and open digest windows and count deadlines
        from this start, with no event needed to wake them (a run that died with the
        old daemon is still seen; a window that closed while it was down is sent)."""
        settings = self._runtime.settings
        for key in self.known():
            if timed(settings.automations_of(key)):
                self._actor(key)

    def reconfigure(self, settings: Settings) -> None:
        """After a reload: every actor takes its scope's new automation list."""
        self._routes.clear()  # scopes may have gained or lost automations
        self._by_project.clear()
        self.remembered.keep(kept_entities(settings.automations, settings.config.orgs))
        for key, actor in self.actors.items():
            actor.reconfigure(settings.automations_of(key), settings.scope(key))
        self.start_timed()

    async def checkpoint(self, evict: bool, ttl: float) -> None:
        for actor in list(self.actors.values()):
            await actor.inbox.send((Checkpoint(evict, ttl), None))

    def close(self) -> None:
        """No more events: each actor finishes its inbox, then returns."""
        for actor in self.actors.values():
            actor.inbox.close()


def timed(automations: list[Automation]) -> bool:
    """Whether a scope's automations keep deadlines of their own (crashes, stalls, digests)."""
    return any((a.run is not None and a.run.metric is None and a.enabled)
               or a.digest_spec is not None for a in automations)
