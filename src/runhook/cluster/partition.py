"""One owned partition: its state restored from the last checkpoint, its events
read from the stream after it, in order, evaluated by the scope actors, their
executions published, and a new checkpoint written now and then."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import anyio
import msgspec
import nats.errors
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from runhook.cluster import checkpoint
from runhook.cluster.bus import (
    EVENTS,
    RECEIVED,
    SCOPE,
    TIME,
    Bus,
    decode_event,
    event_subject,
    lease_key,
    partition_of,
)
from runhook.cluster.outbox import Outbox
from runhook.cluster.positions import Lost, Positions
from runhook.cluster.scopes import ClusterScopes
from runhook.core.acks import Ticket
from runhook.core.bounds import AT_BOUND
from runhook.core.clock import STREAM_TIME, clamp
from runhook.evaluate.inbox import Streamed
from runhook.evaluate.scope import EVALUATION_FAILED, ScopeActor
from runhook.store.database import Store

log = logging.getLogger("runhook.cluster")
FETCH = 2000  # messages a read takes at most
FETCH_WAIT_S = 0.5
RETRY_S = 1.0  # after a failure; doubling up to RETRY_MAX_S while it keeps failing
RETRY_MAX_S = 30.0

# Renews the partition's lease now: True, False once another node holds it, None
# when NATS did not answer (not known: go on, and ask again later).
Renew = Callable[[], Awaitable[bool | None]]


class Partition:
    def __init__(self, number: int, bus: Bus, store: Store, scopes: ClusterScopes,
                 outbox: Outbox, renew: Renew) -> None:
        self.number = number
        self._bus = bus
        self._store = store
        self._scopes = scopes
        self._outbox = outbox
        self._renew = renew
        self._positions = Positions(bus, number)
        self.applied = 0  # the last stream sequence whose effects are committed here
        self.evaluated = 0
        self.skipped = 0  # messages that were not events, events whose evaluation failed
        self.lost = False
        self.failing: str | None = None  # why it is waiting to start again (back-off)
        self._checkpointed = 0
        self._stop = anyio.Event()
        self._stopped = anyio.Event()

    @property
    def name(self) -> str:
        return lease_key(self.number)

    async def run(self) -> None:
        """Until `stop`, or until the partition is found lost: restore, then read and
        evaluate; on a failure, start again from the last checkpoint (what was
        evaluated since is evaluated again; its executions keep their ids, and
        JetStream drops the copies)."""
        delay = RETRY_S
        try:
            while not self._stop.is_set():
                try:
                    await self._restore()
                    self.failing = None
                    await self._follow()
                    return
                except Lost:
                    self.lost = True
                    log.warning("cluster: partition %s went to another node", self.name)
                    return
                except Exception as exc:  # noqa: BLE001 - start again from the checkpoint
                    self.failing = str(exc) or type(exc).__name__
                    log.error("cluster: partition %s: %s; starting again from its checkpoint "
                              "in %.0fs", self.name, str(exc) or type(exc).__name__, delay)
                    with anyio.move_on_after(delay):
                        await self._stop.wait()
                    delay = min(RETRY_MAX_S, delay * 2)
        finally:
            self._outbox.forget(self.number)
            self._stopped.set()

    async def stop(self) -> None:
        """Finish the batch in hand and write a last checkpoint (unless the lease went)."""
        self._stop.set()
        await self._stopped.wait()

    async def _restore(self) -> None:
        scopes = self._scopes.of(self.number)
        await self._scopes.drop(scopes)
        self._outbox.forget(self.number)
        data = await self._positions.claim()
        snapshot = checkpoint.decode(data) if data is not None else None
        if snapshot is not None:  # projects only an entity-wide automation covers
            self._scopes.seen.update(snapshot.scopes)
        await checkpoint.load(self._store, scopes, snapshot)
        self.applied = self._checkpointed = self._positions.position.seq
        count = len(snapshot.scopes) if snapshot else 0
        log.info("cluster: partition %s: restored %d scope%s at stream sequence %d",
                 self.name, count, "" if count == 1 else "s", self.applied)
        self._scopes.start_partition(self.number)

    async def _follow(self) -> None:
        js = self._bus.js
        subscription = await js.pull_subscribe(
            event_subject(self.number), durable=None, stream=EVENTS,
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
        batches: dict[ScopeActor, Streamed] = {}
        last = self.applied
        partitions = self._bus.settings.partitions
        for msg in messages:
            seq = msg.metadata.sequence.stream
            if seq <= last:
                continue  # delivered again after a reconnect
            last = seq
            stored = msg.metadata.timestamp.timestamp()  # the stream leader's clock
            STREAM_TIME.observe(stored)
            headers = msg.headers or {}
            scope = headers.get(SCOPE, "")
            actor = self._scopes.actor(scope)
            if actor is None:
                continue  # no automation has this scope any more
            try:
                if partition_of(scope, partitions) != self.number:
                    raise ValueError(f"scope {scope} is not of this partition")
                event = decode_event(msg.data)
                # The ingress node's clock, kept within a tolerance of the stream's:
                # a node whose clock is off cannot move deadlines (core/clock.py).
                received = clamp(float(headers[RECEIVED]), stored)
                stamp = float(headers[TIME]) if TIME in headers else received
                if not (math.isfinite(received) and math.isfinite(stamp)):
                    raise ValueError("a time that is not a finite number")
            except (ValueError, KeyError, msgspec.DecodeError) as exc:
                # Not one of ours (a hand-made message on the subject): no client
                # was told ok for it, so it is skipped, not retried forever.
                self.skipped += 1
                log.error("cluster: partition %s: stream sequence %d is not an event: %s",
                          self.name, seq, exc)
                continue
            streamed = batches.get(actor)
            if streamed is None:
                streamed = batches[actor] = Streamed([], [])
            streamed.batch.append((event, stamp, seq))  # numbered by its stream sequence
            streamed.received.append(received)
        if batches:
            await self._hand(batches)
        self.applied = last

    async def _hand(self, batches: dict[ScopeActor, Streamed]) -> None:
        ticket = Ticket(asyncio.get_running_loop().create_future(), len(batches))
        await self._scopes.hand(batches, ticket)
        await ticket.future
        if ticket.error is not None:
            raise RuntimeError(f"events not committed: {ticket.error}")
        for seq, error in sorted(ticket.errors.items()):
            if not error.startswith((EVALUATION_FAILED, AT_BOUND)):
                raise RuntimeError(f"events not committed: stream sequence {seq}: {error}")
            # Its evaluation raised (a bug, logged with its traceback), or it met a
            # bound (logged, counted): it would again on every replay, so it is
            # passed over, the rest goes on.
            self.skipped += 1
            if not error.startswith(AT_BOUND):  # those are logged at a limited rate
                log.error("cluster: partition %s: stream sequence %d passed over: %s",
                          self.name, seq, error)
        await self._outbox.flush(self.number)
        self.evaluated += sum(len(b.batch) for b in batches.values())

    async def _checkpoint(self) -> None:
        """The state first, then the wait for what it holds to be published (a timer
        committing meanwhile is not in it), then the lease, then the write."""
        data = await checkpoint.export(self._store, self._scopes.of(self.number), self.applied,
                                       self._bus.settings.node)
        await self._outbox.flush(self.number)
        owned = await self._renew()
        if owned is False:
            raise Lost()
        if owned is None:
            log.warning("cluster: partition %s: NATS did not answer; checkpoint put off",
                        self.name)
            return
        await self._positions.save(self.applied, data, self._bus.settings.node)
        self._checkpointed = self.applied
        log.debug("cluster: partition %s: checkpoint at %d (%d bytes)", self.name,
                  self.applied, len(data))
