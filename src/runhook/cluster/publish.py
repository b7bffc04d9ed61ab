"""Ingress in cluster mode: Admission routes events to sinks, one per scope, that
publish them to the scope's partition; a line is answered ok once JetStream
acknowledged every copy of it (one per scope with automations for it)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from runhook.cluster.bus import (
    MSG_ID,
    RECEIVED,
    SCOPE,
    TIME,
    Bus,
    encode,
    event_subject,
    partition_of,
)
from runhook.config.settings import Settings
from runhook.core.acks import Ticket, id_place
from runhook.core.events import Event
from runhook.core.scopes import scope_keys
from runhook.evaluate.scope import Batch

log = logging.getLogger("runhook.cluster")
# How long a publish may wait for JetStream's ack before its lines are refused.
PUBLISH_TIMEOUT_S = 10.0


class Inbox:
    """Admission sends to an actor's inbox when `take` refuses; a sink never does."""

    def send_nowait(self, item: object) -> None:  # pragma: no cover - take never refuses
        raise AssertionError("a cluster sink takes every batch")

    async def send(self, item: object) -> None:  # pragma: no cover
        raise AssertionError("a cluster sink takes every batch")


class Sink:
    """Stands where a ScopeActor stands for Admission: `take` publishes the batch to
    the scope's partition, one message per event, deduplicated by the event's id
    for this scope (the same key single-machine idempotency uses)."""

    __slots__ = ("_publisher", "inbox", "scope", "subject")

    def __init__(self, scope: str, subject: str, publisher: Publisher) -> None:
        self.scope = scope
        self.subject = subject
        self._publisher = publisher
        self.inbox = Inbox()

    def take(self, batch: Batch, ticket: Ticket) -> bool:
        self._publisher.publish(self, batch, ticket)
        return True


class Publisher:
    """The router Admission takes in cluster mode (it has Scopes' `route`)."""

    def __init__(self, settings: Callable[[], Settings], bus: Bus) -> None:
        self._settings = settings
        self._bus = bus
        self._sinks: dict[str, Sink] = {}
        self._routes: dict[tuple[str, str | None, str | None], list[Sink]] = {}
        self.published = 0
        # Taken in the order the batches came (tasks start in creation order), so
        # one connection's events reach each partition in the order it sent them.
        self._order = asyncio.Lock()

    def route(self, event: Event) -> list[Sink]:
        place = (event.entity, event.project, event.registry)
        found = self._routes.get(place)
        if found is None:
            if len(self._routes) >= 10_000:
                self._routes.clear()
            covers = self._settings().covers
            found = self._routes[place] = [self._sink(key) for key in scope_keys(event)
                                           if covers(key)]
        return found

    def reconfigure(self) -> None:
        self._routes.clear()

    def _sink(self, scope: str) -> Sink:
        sink = self._sinks.get(scope)
        if sink is None:
            partitions = self._bus.settings.partitions
            sink = self._sinks[scope] = Sink(scope, event_subject(partition_of(scope, partitions)),
                                             self)
        return sink

    def publish(self, sink: Sink, batch: Batch, ticket: Ticket) -> None:
        asyncio.get_running_loop().create_task(self._publish(sink, batch, ticket))

    async def _publish(self, sink: Sink, batch: Batch, ticket: Ticket) -> None:
        js = self._bus.js
        futures = []
        scope = sink.scope
        received = repr(time.time())  # the owner's `now` for these events, on any owner
        try:
            # One bound on all of it: the turn behind other batches, room in the
            # client's buffer, and JetStream's acks.
            async with asyncio.timeout(PUBLISH_TIMEOUT_S):
                async with self._order:  # the sending in order; the acks in parallel
                    for event, stamp, _ in batch:
                        headers = {SCOPE: scope, TIME: repr(stamp), RECEIVED: received}
                        if event.id is not None:
                            headers[MSG_ID] = f"{event.id} {id_place(scope, event.location)}"
                        # No wait_stall: its wait_for per message cost 9x the rate; the
                        # timeout above bounds the wait for room in the buffer.
                        futures.append(await js.publish_async(sink.subject, encode(event),
                                                              headers=headers))
                await asyncio.gather(*futures)
        except Exception as exc:  # noqa: BLE001 - refuse the lines, keep serving
            for future in futures:
                if not future.done():
                    future.cancel()
            reason = str(exc) or type(exc).__name__
            log.warning("cluster: publishing %d events of %s failed: %s", len(batch), scope,
                        reason)
            ticket.done(f"the cluster did not acknowledge it: {reason}",
                        [line_no for _, _, line_no in batch],
                        [(e.id, id_place(scope, e.location)) for e, _, _ in batch
                         if e.id is not None])
            return
        self.published += len(batch)
        ticket.done()
