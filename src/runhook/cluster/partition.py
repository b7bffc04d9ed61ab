"""One owned partition: its state restored from the last checkpoint, its events
read from the stream after it, in order, evaluated by the scope actors, their
executions published, and a new checkpoint written now and then. It acts only
while its lease is known valid (leases.Tenure), and starts again from its
checkpoint after a failure, waiting longer each time it fails again; after
GIVE_UP_AFTER failures in a row it stops, and its node declines it."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import anyio
import msgspec
import nats.js.errors
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
    take,
)
from runhook.cluster.leases import Tenure
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
SUBSCRIBE_TRIES = 10  # a 503 to the consumer's creation, asked again this often...
SUBSCRIBE_RETRY_S = 0.1  # ...this far apart
# Failures in a row (none of a batch committed, a checkpoint written, or the stream
# read up to its end between them) after which the node lets the partition go:
# four take 1 + 2 + 4 s of back-off, longer than a JetStream leader election, so
# a NATS blip moves nothing, and a node that cannot run a partition (its disk, its
# configuration) hands it to one that may within seconds, not never.
GIVE_UP_AFTER = 4
UP = time.monotonic()  # about when this node came up: it took events from then on

# Renews the partition's lease now: True, False once another node holds it, None
# when NATS did not answer (not known: go on, and ask again later).
Renew = Callable[[], Awaitable[bool | None]]


class Backoff:
    """The waits between a partition's restarts: doubling while it keeps failing,
    the first again after a success; None once it failed GIVE_UP_AFTER times in a row."""

    def __init__(self) -> None:
        self.failures = 0

    def failed(self) -> float | None:
        self.failures += 1
        if self.failures >= GIVE_UP_AFTER:
            return None
        return float(min(RETRY_MAX_S, RETRY_S * 2 ** (self.failures - 1)))

    def succeeded(self) -> None:
        self.failures = 0


class Partition:
    def __init__(self, number: int, bus: Bus, store: Store, scopes: ClusterScopes,
                 outbox: Outbox, renew: Renew, tenure: Tenure) -> None:
        self.number = number
        self._bus = bus
        self._store = store
        self._scopes = scopes
        self._outbox = outbox
        self._renew = renew
        self._tenure = tenure
        self._positions = Positions(bus, number)
        self.applied = 0  # the last stream sequence whose effects are committed here
        self.evaluated = 0
        self.skipped = 0  # messages that were not events, events whose evaluation failed
        self.lost = False
        self.failing: str | None = None  # why it is waiting to start again (back-off)
        self.backoff = Backoff()
        self.gave_up = False  # failed GIVE_UP_AFTER times in a row: its node declines it
        self.retry_at: float | None = None  # wall clock: its next start while in back-off
        # The checkpoint it started from could not be read, why, and what was done
        # (kept for this ownership: `runhook status` says so, not only the log).
        self.corrupt: str | None = None
        self.claimed = False  # its position is read (the lag counts after it)
        self.subscription: Any = None  # its stream consumer while it follows the stream
        self.in_hand = 0  # events read from the stream and not yet committed
        self._checkpointed = 0
        self._checkpointed_commits = 0  # the outbox's count of its executions then
        self.since = 0.0  # stream time since which silence counts (checkpoint.watched_since)
        self._stop = anyio.Event()
        self._stopped = anyio.Event()

    @property
    def name(self) -> str:
        return lease_key(self.number)

    @property
    def positions(self) -> Positions:
        return self._positions

    async def run(self) -> None:
        """Until `stop`, or until the partition is found lost: restore, then read and
        evaluate; on a failure, start again from the last checkpoint (what was
        evaluated since is evaluated again; its executions keep their ids, and
        JetStream drops the copies)."""
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
                    reason = self.failing = str(exc) or type(exc).__name__
                    delay = self.backoff.failed()
                    if delay is None:
                        self.gave_up = True
                        log.error("cluster: partition %s: %s; %d failures in a row: letting "
                                  "it go", self.name, reason, self.backoff.failures)
                        return
                    log.error("cluster: partition %s: %s; starting again from its checkpoint "
                              "in %.0fs", self.name, reason, delay)
                    self.retry_at = time.time() + delay
                    with anyio.move_on_after(delay):
                        await self._stop.wait()
                    self.retry_at = None
        finally:
            if self.lost or self.gave_up:
                self._tenure.end()  # its actors fire nothing more, and return once dropped
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
        # Renewed now, not as of the last round: a node that lost the partition while
        # failing must not claim it back from its new owner.
        owned = await self._renew()
        if owned is False or self._tenure.over:
            raise Lost()
        if owned is None:
            raise RuntimeError("NATS did not answer the lease's renewal")
        data = await self._positions.claim()
        self.claimed = True
        self._outbox.own(self.number, self._positions.fence, self._tenure)
        self._checkpointed_commits = self._outbox.committed.get(self.number, 0)
        snapshot = self._decode(data) if data is not None else None
        now = STREAM_TIME.now()
        if snapshot is not None:
            snapshot = self._admit(snapshot, now)
            # Projects only an entity-wide automation covers.
            self._scopes.seen.update(snapshot.scopes)
        await checkpoint.load(self._store, scopes, snapshot)
        # Deadlines count from the runs' last events as the last owner counted them,
        # not from this takeover: the stream holds every event of the gap.
        self.since = checkpoint.watched_since(snapshot, now - (time.monotonic() - UP), now)
        self._scopes.since[self.number] = self.since
        for scope in scopes + list(snapshot.scopes if snapshot else ()):
            self._scopes.resumed.pop(scope, None)
        if snapshot is not None:
            self._scopes.resumed.update(snapshot.times)
        self.applied = self._checkpointed = self._positions.position.seq
        count = len(snapshot.scopes) if snapshot else 0
        log.info("cluster: partition %s: restored %d scope%s at stream sequence %d",
                 self.name, count, "" if count == 1 else "s", self.applied)
        self._scopes.start_partition(self.number)

    def _decode(self, data: bytes) -> checkpoint.Snapshot | None:
        """The checkpoint's state. One that is not a checkpoint at all (garbage: no node
        can read it) is passed over: the partition starts at its position without the
        state, so no event before it is evaluated (or fires) again. One of another
        format is refused: a node that reads it (another version, in a rolling
        upgrade) may take the partition, and nothing here writes over it."""
        try:
            return checkpoint.decode(data)
        except msgspec.DecodeError as exc:
            self.corrupt = (f"checkpoint corrupt: undecodable ({exc}); started at stream "
                            f"sequence {self._positions.position.seq} without its state")
            log.error("cluster: partition %s: %s", self.name, self.corrupt)
            return None
        except ValueError as exc:
            self.corrupt = (f"checkpoint corrupt: {exc}; refused: not evaluated here, left "
                            "to a node that reads it")
            raise RuntimeError(self.corrupt) from None

    def _admit(self, snapshot: checkpoint.Snapshot, now: float) -> checkpoint.Snapshot:
        """Its own scopes only, its times within the stream's retention up to now
        (checkpoint.admit); scopes of other partitions are left out, said in status."""
        settings = self._bus.settings
        snapshot, foreign = checkpoint.admit(snapshot, self.number, settings.partitions, now,
                                             now - settings.retention)
        if foreign:
            self.corrupt = (f"checkpoint corrupt: it names {len(foreign)} scope"
                            f"{'' if len(foreign) == 1 else 's'} of other partitions (first "
                            f"{foreign[0]!r}); restored without them")
            log.error("cluster: partition %s: %s", self.name, self.corrupt)
        return snapshot

    async def _follow(self) -> None:
        js = self._bus.js
        config = ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                                opt_start_seq=self.applied + 1, ack_policy=AckPolicy.NONE,
                                inactive_threshold=30.0, mem_storage=True)
        # JetStream may answer 503 for a moment (seen right after a takeover, with the
        # servers all up): asked again at once, not a restart and RETRY_S of back-off
        # on a fail-over's path.
        for tries_left in reversed(range(SUBSCRIBE_TRIES)):
            try:
                subscription = self.subscription = await js.pull_subscribe(
                    event_subject(self.number), durable=None, stream=EVENTS, config=config)
                break
            except nats.js.errors.ServiceUnavailableError:
                if not tries_left:
                    raise
                await anyio.sleep(SUBSCRIBE_RETRY_S)
        last_checkpoint = time.monotonic()
        interval = self._bus.settings.checkpoint_interval
        try:
            while not self._stop.is_set():
                if self.number in self._outbox.fenced_out:
                    raise Lost()  # a timer's executions were refused: another node claimed it
                # take(), not fetch(FETCH): an event coming to an empty stream (the
                # next webhook after a fail-over, a trickle) waited out FETCH_WAIT_S.
                messages = await take(subscription, FETCH, FETCH_WAIT_S)
                if messages and await self._hold():  # an empty list: nats-py's, not a timeout
                    self.in_hand = len(messages)
                    await self._evaluate(messages)
                    self.in_hand = 0
                elif not messages:
                    self.backoff.succeeded()  # read up to the stream's end
                if time.monotonic() - last_checkpoint >= interval and self._dirty():
                    await self._checkpoint()
                    last_checkpoint = time.monotonic()
            await self._checkpoint()
        finally:
            self.subscription, self.in_hand = None, 0
            try:
                await subscription.unsubscribe()
            except Exception as exc:  # noqa: BLE001 - the consumer expires by itself
                log.debug("cluster: partition %s: unsubscribing: %s", self.name, exc)

    async def _hold(self) -> bool:
        """Until the lease is known valid (True), or the partition is stopping (False:
        what was fetched is left to the next owner); Lost once it went."""
        while not self._tenure.valid():
            if self._tenure.over:
                raise Lost()
            if self._stop.is_set():
                return False
            await self._tenure.confirm(self._bus.settings.lease / 3)
        return True

    def _dirty(self) -> bool:
        """Something since the last checkpoint: events, or a timer's executions (a
        firing the checkpoint does not hold would fire again on the next owner,
        after JetStream's duplicate window perhaps, as a second alert)."""
        return self.applied != self._checkpointed or \
            self._outbox.committed.get(self.number, 0) != self._checkpointed_commits

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
        if not await self._outbox.flush(self.number):
            raise RuntimeError("JetStream did not acknowledge the executions in time")
        self.evaluated += sum(len(b.batch) for b in batches.values())
        self.backoff.succeeded()

    async def _checkpoint(self) -> None:
        """The state first, then the wait for what it holds to be published (a timer
        committing meanwhile is not in it), then the lease, then the write."""
        # Counted before the state is read: a commit after this makes the next one due.
        commits = self._outbox.committed.get(self.number, 0)
        scopes = self._scopes.of(self.number)
        data = await checkpoint.export(self._store, scopes, self.applied, self._bus.settings.node,
                                       self.since, STREAM_TIME.now(), self._scopes.times(scopes))
        if not await self._outbox.flush(self.number):
            # Some are still being tried (a timer's, NATS away): not before they land,
            # or the next owner would restore what they say and never send them.
            log.warning("cluster: partition %s: executions not yet acknowledged; checkpoint "
                        "put off", self.name)
            return
        owned = await self._renew()
        if owned is False:
            raise Lost()
        if owned is None:
            log.warning("cluster: partition %s: NATS did not answer; checkpoint put off",
                        self.name)
            return
        await self._positions.save(self.applied, data, self._bus.settings.node)
        self._checkpointed = self.applied
        self._checkpointed_commits = commits
        self.backoff.succeeded()
        log.debug("cluster: partition %s: checkpoint at %d after %d executions made here "
                  "(%d bytes)", self.name, self.applied, commits, len(data))
