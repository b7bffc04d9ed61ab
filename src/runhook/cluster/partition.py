"""One owned partition: its state restored from the last checkpoint, its events
read from the stream after it, in order, evaluated by the scope actors, their
executions published, and a new checkpoint written now and then."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any

import anyio
import msgspec
import nats.errors
import nats.js.errors
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from runhook.cluster import checkpoint
from runhook.cluster.bus import RECEIVED, SCOPE, TIME, Bus, decode_event, event_subject, lease_key
from runhook.cluster.outbox import Outbox
from runhook.cluster.scopes import ClusterScopes
from runhook.core.acks import Ticket
from runhook.evaluate.scope import Batch, ScopeActor
from runhook.store.database import Store

log = logging.getLogger("runhook.cluster")
FETCH = 2000  # messages a read takes at most
FETCH_WAIT_S = 0.5
RETRY_S = 1.0


class Lost(Exception):
    """The lease went to another node: stop without writing a checkpoint."""


class Partition:
    def __init__(self, number: int, bus: Bus, store: Store, scopes: ClusterScopes,
                 outbox: Outbox, still_owned: object) -> None:
        self.number = number
        self._bus = bus
        self._store = store
        self._scopes = scopes
        self._outbox = outbox
        self._still_owned = still_owned  # async () -> bool: renews the lease, or False
        self.applied = 0  # the last stream sequence whose effects are committed here
        self.evaluated = 0
        self.skipped = 0
        self._checkpointed = 0
        self._stop = anyio.Event()
        self._stopped = anyio.Event()

    @property
    def name(self) -> str:
        return lease_key(self.number)

    async def run(self) -> None:
        """Until `stop`: restore, then read and evaluate; on a failure, start again
        from the last checkpoint (what was evaluated since is evaluated again; its
        executions keep their ids, and JetStream drops the copies)."""
        try:
            while not self._stop.is_set():
                try:
                    await self._restore()
                    await self._follow()
                except Lost:
                    log.warning("cluster: partition %s: the lease was taken over", self.name)
                    return
                except Exception as exc:  # noqa: BLE001 - start again from the checkpoint
                    log.error("cluster: partition %s: %s; starting again from its checkpoint",
                              self.name, exc or type(exc).__name__)
                    with anyio.move_on_after(RETRY_S):
                        await self._stop.wait()
        finally:
            self._stopped.set()

    async def stop(self) -> None:
        """Finish the batch in hand and write a last checkpoint (unless the lease went)."""
        self._stop.set()
        await self._stopped.wait()

    async def _restore(self) -> None:
        scopes = self._scopes.of(self.number)
        await self._scopes.drop(scopes)
        snapshot = None
        try:
            found = await self._bus.checkpoints.get(self.name)
        except nats.js.errors.ObjectNotFoundError:
            pass
        else:
            snapshot = checkpoint.decode(found.data or b"")
        await checkpoint.load(self._store, scopes, snapshot)
        self.applied = self._checkpointed = snapshot.seq if snapshot else 0
        log.info("cluster: partition %s: restored %d scopes at stream sequence %d",
                 self.name, len(snapshot.scopes) if snapshot else 0, self.applied)
        self._scopes.start_partition(self.number)

    async def _follow(self) -> None:
        js = self._bus.js
        subscription = await js.pull_subscribe(
            event_subject(self.number), durable=None, stream="RUNHOOK_EVENTS",
            config=ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                                  opt_start_seq=self.applied + 1, ack_policy=AckPolicy.NONE,
                                  inactive_threshold=30.0, mem_storage=True))
        last_checkpoint = time.monotonic()
        interval = self._bus.settings.checkpoint_interval
        try:
            while not self._stop.is_set():
                try:
                    messages = await subscription.fetch(FETCH, timeout=FETCH_WAIT_S)
                except (TimeoutError, nats.errors.TimeoutError):
                    messages = []
                if messages:  # nats-py may answer an empty list, not a timeout
                    await self._evaluate(messages)
                if time.monotonic() - last_checkpoint >= interval \
                        and self.applied != self._checkpointed:
                    await self._checkpoint()
                    last_checkpoint = time.monotonic()
            await self._checkpoint()
        finally:
            try:
                await subscription.unsubscribe()
            except Exception as exc:  # noqa: BLE001 - the consumer expires by itself
                log.debug("cluster: partition %s: unsubscribing: %s", self.name, exc)

    async def _evaluate(self, messages: Sequence[Any]) -> None:
        causes = self._scopes.causes
        batches: dict[ScopeActor, Batch] = {}
        last = self.applied
        for msg in messages:
            seq = msg.metadata.sequence.stream
            if seq <= last:
                continue  # delivered again after a reconnect
            last = seq
            headers = msg.headers or {}
            actor = self._scopes.actor(headers.get(SCOPE, ""))
            if actor is None:
                continue  # no automation has this scope any more
            try:
                event = decode_event(msg.data)
                received, stamp = float(headers[RECEIVED]), float(headers[TIME])
            except (ValueError, KeyError, msgspec.DecodeError) as exc:
                # Not one of ours (a hand-made message on the subject): no client
                # was told ok for it, so it is skipped, not retried forever.
                self.skipped += 1
                log.error("cluster: partition %s: stream sequence %d is not an event: %s",
                          self.name, seq, exc)
                continue
            causes[id(event)] = (seq, received)
            batches.setdefault(actor, []).append((event, stamp, seq))
        if batches:
            ticket = Ticket(asyncio.get_running_loop().create_future(), len(batches))
            try:
                for actor, batch in batches.items():
                    if not actor.take(batch, ticket):
                        await actor.inbox.send((batch, ticket))
                await ticket.future
            finally:
                for batch in batches.values():
                    for event, _, _ in batch:
                        causes.pop(id(event), None)
            if ticket.error or ticket.errors:
                raise RuntimeError(f"events not committed: {ticket.error or _first(ticket)}")
            await self._outbox.flush()
            self.evaluated += sum(len(b) for b in batches.values())
        self.applied = last

    async def _checkpoint(self) -> None:
        if not await self._still_owned():  # type: ignore[operator]
            raise Lost()
        await self._outbox.flush()
        data = await checkpoint.export(self._store, self._scopes.of(self.number), self.applied,
                                       self._bus.settings.node)
        await self._bus.checkpoints.put(self.name, data)
        self._checkpointed = self.applied
        log.debug("cluster: partition %s: checkpoint at %d (%d bytes)", self.name,
                  self.applied, len(data))


def _first(ticket: Ticket) -> str:
    line, error = next(iter(ticket.errors.items()))
    return f"stream sequence {line}: {error}"
