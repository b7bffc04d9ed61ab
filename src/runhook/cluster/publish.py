"""Ingress in cluster mode: the Router admission takes there. An event is published to
each place it happened in (its project or registry, and for artifact events its entity)
whatever this node's automations, one message per place to the place's partition; the
partition's owner decides under its own configuration whether a scope evaluates it. A
line is answered ok once JetStream acknowledged every copy of it."""

from __future__ import annotations

import asyncio
import logging

from anyio.abc import TaskGroup

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
from runhook.core.acks import Ticket, id_place
from runhook.core.clock import wall_time
from runhook.core.events import CollectionEvent, Event
from runhook.evaluate.inbox import Batch

log = logging.getLogger("runhook.cluster")
# How long a publish may wait for JetStream's ack before its lines are refused.
PUBLISH_TIMEOUT_S = 10.0


class Destination:
    """A scope's place in the cluster: its partition's subject, and the turn its
    batches take to be sent there (one per partition)."""

    __slots__ = ("order", "scope", "subject")

    def __init__(self, scope: str, subject: str, order: asyncio.Lock) -> None:
        self.scope = scope
        self.subject = subject
        self.order = order


class Publisher:
    """Routes events to their places' partitions and publishes them there, each batch
    in a task of the node's task group `tg`, deduplicated by the event's id for this
    place (the same key single-machine idempotency uses).

    Not by this node's automations: while a new configuration rolls out, the node that
    took the line may not know a scope that the partition's owner already evaluates,
    and an event it answered ok for must still reach that owner. The cost is bounded:
    one message per place, so a run event (the bulk: metrics, heartbeats) is one
    message, as its project's scope holds every run automation (an entity's run
    automations are evaluated in each project's actor), and an artifact event two
    (its project or registry, and its entity's artifact automations). An owner drops
    a message no automation of its scope takes before decoding it."""

    def __init__(self, bus: Bus, tg: TaskGroup) -> None:
        self._bus = bus
        self._tg = tg
        self._destinations: dict[str, Destination] = {}
        self._routes: dict[tuple[str, str | None, str | None, bool], list[Destination]] = {}
        self.published = 0
        # One turn per partition, taken in the order the batches came (tasks start in
        # creation order, a lock's waiters are served in order), so one connection's
        # events reach each partition in the order it sent them, and a partition
        # whose sending stalls holds no other partition's.
        self._order: dict[int, asyncio.Lock] = {}

    def route(self, event: Event) -> list[Destination]:
        place = (event.entity, event.project, event.registry, isinstance(event, CollectionEvent))
        found = self._routes.get(place)
        if found is None:
            if len(self._routes) >= 10_000:
                self._routes.clear()
            found = self._routes[place] = [self._destination(key) for key in places(event)]
        return found

    def reconfigure(self) -> None:
        """Routes do not depend on the configuration (see the class): nothing to redo."""

    def _destination(self, scope: str) -> Destination:
        found = self._destinations.get(scope)
        if found is None:
            # Every place is published now, so a client naming new projects would grow
            # this without bound: remade on demand (the partition's turn is in _order).
            if len(self._destinations) >= 10_000:
                self._destinations.clear()
            partition = partition_of(scope, self._bus.settings.partitions)
            order = self._order.get(partition)
            if order is None:
                order = self._order[partition] = asyncio.Lock()
            found = self._destinations[scope] = Destination(scope, event_subject(partition),
                                                            order)
        return found

    async def hand(self, batches: dict[Destination, Batch], ticket: Ticket) -> None:
        """Each batch published by a task of its own (the acks of one wait in parallel
        with the sending of the next); none waits here."""
        for destination, batch in batches.items():
            self._tg.start_soon(self._publish, destination, batch, ticket)

    async def _publish(self, destination: Destination, batch: Batch, ticket: Ticket) -> None:
        js = self._bus.js
        futures = []
        scope = destination.scope
        # The owner's `now` for these events, on any owner (kept within a tolerance
        # of the stream's own time there); an event's own `time`, if it has one.
        received = repr(wall_time())
        try:
            # One bound on all of it: the turn behind the partition's other batches,
            # room in the client's buffer, and JetStream's acks.
            async with asyncio.timeout(PUBLISH_TIMEOUT_S):
                async with destination.order:  # the sending in order; the acks in parallel
                    for event, stamp, _ in batch:
                        headers = {SCOPE: scope, RECEIVED: received}
                        if event.time is not None:
                            headers[TIME] = repr(stamp)
                        if event.id is not None:
                            headers[MSG_ID] = f"{event.id} {id_place(scope, event.location)}"
                        # No wait_stall: its wait_for per message cost 9x the rate; the
                        # timeout above bounds the wait for room in the buffer.
                        futures.append(await js.publish_async(destination.subject, encode(event),
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


def places(event: Event) -> list[str]:
    """The scopes an event may be evaluated in under any configuration: where it
    happened, and for an artifact or collection event its entity (`entity:` and `org:`
    automations of artifact kinds live there; those of run kinds in each project)."""
    if isinstance(event, CollectionEvent):
        return [event.location, f"entity:{event.entity}"]
    return [event.location]
