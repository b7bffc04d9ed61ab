"""The scope actors of a cluster node: only those of the partitions it owns, each
evaluating as the owner before it would have (event times and execution ids taken
from the stream, not from this node's clock or randomness: WallClock, StreamIds and
the batches' stream positions), writing to this node's SQLite as a cache of state
that the checkpoints in JetStream hold for good. A scope's timers fire only while
its partition's lease is known valid (leases.Tenure): a node that was paused past
its lease wakes with its deadlines passed and must not call healthy runs crashed
from events it has not read."""

from __future__ import annotations

import hashlib
import logging
from typing import Any

import anyio

from runhook.cluster.bus import partition_of
from runhook.cluster.checkpoint import Times
from runhook.cluster.leases import Tenure
from runhook.config.runtime import Runtime
from runhook.core.clock import WallClock
from runhook.core.executions import Job
from runhook.delivery.actor import Deliveries
from runhook.evaluate.inbox import Checkpoint, Item
from runhook.evaluate.routing import Scopes, timed
from runhook.evaluate.runbook import RunBook
from runhook.evaluate.scope import ScopeActor
from runhook.evaluate.timers import BEAT, STALL
from runhook.store.database import Store
from runhook.triggers.silences import Silences
from runhook.triggers.state import RUNNING

log = logging.getLogger("runhook.cluster")


class StreamIds:
    """Execution ids that any owner derives alike: from the cause (the scope and the
    stream sequence of the event, or a timer's stable key) and a count within it.
    A new owner evaluating an event again names its executions as the old one did,
    so JetStream drops the copies (Nats-Msg-Id) and receivers see one webhook-id."""

    __slots__ = ("_at", "_cause", "_n")

    def __init__(self) -> None:
        self._cause = b""
        self._n = 0
        self._at: float | None = None

    def start(self, cause: str, at: float | None = None) -> None:
        """`at`: the time to name the ids by (else the `now` they are made at)."""
        self._cause = cause.encode()
        self._n = 0
        self._at = at

    def new_id(self, now: float | None = None) -> str:
        self._n += 1
        digest = hashlib.blake2b(self._cause + b"|%d" % self._n, digest_size=7).hexdigest()
        at = self._at if self._at is not None else now
        return f"ex_{int((at or 0.0) * 1000):012x}{digest}"

    __call__ = new_id


class OwnedActor(ScopeActor):
    """A scope actor of one ownership of its partition (`tenure`, the lease it was
    started under). Its timers fire only while that lease is known valid: while it
    is not (a renewal late, NATS away) the due timers stay due and the actor waits
    for a renewal, up to a third of the lease at a time. Once that ownership is
    over its timers are the next owner's: it only waits for its inbox to close."""

    def __init__(self, *args: Any, tenure: Tenure | None, lease: float,
                 since: float | None = None, times: Times | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._tenure = tenure
        self._lease = lease
        # What its partition's checkpoint says its deadlines count from: applied to
        # the book its first restore makes (a later resync counts from then, as before).
        self._resume = (since, times) if since is not None else None

    async def _restore(self) -> None:
        await super()._restore()
        if self._resume is not None:
            since, times = self._resume
            self._resume = None
            if self.evaluator.keeps_state:  # else a new book: it counts from now, as before
                # Never later than now: a node that read no stream time yet when its
                # partition was restored took its own clock, which may be ahead.
                now = self.clock.monotonic()
                resume(self.book, min(since, now), times or Times(), now)

    async def _next(self) -> Item | None:
        if self._tenure is None or self._tenure.over:
            return await self._receive.receive()  # EndOfStream once dropped
        return await super()._next()

    async def _expire(self) -> None:
        tenure = self._tenure
        if tenure is None or not (tenure.valid() or await tenure.confirm(self._lease / 3)):
            return
        await super()._expire()


def resume(book: RunBook, since: float, times: Times, now: float) -> None:
    """A restored book's deadlines counted as its partition's last owner counted them:
    silence from `since` at the earliest (not from this takeover), a stall from its
    metric's last values, a group's settling from its last join (docs/cluster.md)."""
    book.started = since
    for name, joined in times.joined.items():
        group = book.groups.get(name)
        if group is not None:
            group.joined_at = joined
    for run in book.runs.values():
        values = times.values.get(run.run_id)
        if values:
            run.values_at = dict(values)
        care = run.care
        if care is None or run.state != RUNNING:
            continue
        # Earlier than the deadlines the restore queued (from now): Timers keeps the
        # earliest, and each check queues the real one again if it came too soon.
        book.timers.arm(BEAT, run.run_id, max(run.last_seen, since) + care.timeout)
        for _, stall in care.stalls:
            at = (run.values_at or {}).get(stall.metric or "", since)
            book.timers.arm(STALL, run.run_id, max(at, since) + stall.span)
    for name in list(book.groups):
        book.group_changed(name, now)


def times_of(book: RunBook) -> Times | None:
    """What `resume` needs of a live book, for its partition's checkpoint."""
    values = {run.run_id: dict(run.values_at) for run in book.runs.values() if run.values_at}
    joined = {name: group.joined_at for name, group in book.groups.items()}
    return Times(values, joined) if values or joined else None


class NoOffers:
    """Delivery in cluster mode starts from the executions stream, not from here."""

    def offer(self, job: Job) -> None:
        pass


class ClusterScopes(Scopes):
    """Scopes whose actors exist only for owned partitions, and can be dropped (and
    waited for) when a partition moves away."""

    def __init__(self, runtime: Runtime, store: Store, deliveries: Deliveries,
                 tg: anyio.abc.TaskGroup, silences: Silences, partitions: int) -> None:
        super().__init__(runtime, store, deliveries, tg, silences)
        self.partitions = partitions
        self._done: dict[str, anyio.Event] = {}
        # partition -> what this node knows of its lease (the lease keeper's, set by
        # the node before any partition is taken).
        self.tenures: dict[int, Tenure] = {}
        self.lease = 0.0
        # Set by a partition's restore from its checkpoint: since when its silence
        # counts, and its scopes' times (taken by each scope's actor when it starts).
        self.since: dict[int, float] = {}
        self.resumed: dict[str, Times] = {}

    def actor(self, scope: str) -> ScopeActor | None:
        """The scope's actor, started on first use; None when no automation has it."""
        if not self._runtime.settings.covers(scope):
            return None
        return self._actor(scope)

    def _actor(self, key: str) -> ScopeActor:
        actor = self.actors.get(key)
        if actor is None:
            settings = self._runtime.settings
            # The stream's time is both the record's and the deadlines' (WallClock).
            partition = partition_of(key, self.partitions)
            actor = OwnedActor(key, settings.automations_of(key), self._store, NoOffers(),
                               self._runtime.metrics, self._silences, settings.scope(key),
                               WallClock(), StreamIds(), lease=self.lease,
                               tenure=self.tenures.get(partition),
                               since=self.since.get(partition), times=self.resumed.pop(key, None))
            self.actors[key] = actor
            self.seen.add(key)
            done = self._done[key] = anyio.Event()
            self._tg.start_soon(self._run, actor, done, name=f"scope {key}")
        return actor

    @staticmethod
    async def _run(actor: ScopeActor, done: anyio.Event) -> None:
        try:
            await actor.run()
        finally:
            done.set()

    def of(self, partition: int) -> list[str]:
        """The scopes with automations (configured, or projects an entity-wide run
        automation covers that were seen here or in a checkpoint) that live in `partition`."""
        return [key for key in self.known() if partition_of(key, self.partitions) == partition]

    def start_timed(self) -> None:
        """Actors start with their partition (`start_partition`), not with the node."""

    def start_partition(self, partition: int) -> None:
        for key in self.of(partition):
            if timed(self._runtime.settings.automations_of(key)):
                self._actor(key)

    async def drop(self, scopes: list[str]) -> None:
        """Stop these scopes' actors and wait until they returned (their last write
        queued), so state imported after this is not overwritten by theirs."""
        waiting = []
        for key in scopes:
            actor = self.actors.pop(key, None)
            if actor is not None:
                actor.inbox.close()
                waiting.append(self._done.pop(key))
        self._routes.clear()
        for done in waiting:
            await done.wait()

    def times(self, scopes: list[str]) -> dict[str, Times]:
        """The deadlines' times of these scopes for a checkpoint: a live actor's book,
        else what the last checkpoint said and no actor took yet."""
        out = {}
        for key in scopes:
            actor = self.actors.get(key)
            found = times_of(actor.book) if actor is not None else self.resumed.get(key)
            if found is not None:
                out[key] = found
        return out

    async def checkpoint(self, evict: bool, ttl: float) -> None:
        for actor in list(self.actors.values()):
            try:
                await actor.inbox.send((Checkpoint(evict, ttl), None))
            except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                continue  # its partition moved away meanwhile

