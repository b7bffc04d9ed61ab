"""A cluster node's own parts (docs/cluster.md): the NATS connection, the lease
keeper, the partitions this node owns, the delivery workers, the history mirror and
the publisher the ways in hand events to. app/cluster.py composes them into the
daemon's lifecycle; nothing here knows the daemon, the console or the socket."""

from __future__ import annotations

import logging

import anyio
from anyio.abc import TaskGroup

from runhook.cluster.bus import Bus
from runhook.cluster.deliver import Workers
from runhook.cluster.health import Health
from runhook.cluster.leases import Leases
from runhook.cluster.mirror import Mirror
from runhook.cluster.outbox import ClusterStore, Outbox
from runhook.cluster.partition import Partition
from runhook.cluster.publish import Publisher
from runhook.cluster.scopes import ClusterScopes
from runhook.cluster.shared import Shared, bounds
from runhook.cluster.standing import Standing
from runhook.config.cluster import ClusterSettings
from runhook.config.runtime import Runtime
from runhook.triggers.silences import Silences

log = logging.getLogger("runhook")


class Node:
    """A part of the lifecycle, in the layer above the scope actors: it starts the
    workers and the mirror, takes and hands over partitions as the leases say, and
    when stopping hands every partition over (within `drain_timeout`) before the
    scope actors close. The lease keeper itself runs with the ways in (`leases.run`),
    so it is stopped before the hand-over."""

    def __init__(self, runtime: Runtime, settings: ClusterSettings, store: ClusterStore,
                 silences: Silences) -> None:
        self._runtime = runtime
        self.settings = settings
        self.bus = Bus(settings)
        self.shared = Shared(self.bus, silences, runtime)
        self.bus.bounds = bounds(runtime)
        self.outbox = Outbox(self.bus)
        self.store = store
        store.outbox = self.outbox
        self.scopes: ClusterScopes | None = None  # set by whoever made them, before start
        self.partitions: dict[int, Partition] = {}
        self.leases: Leases | None = None
        self.workers: Workers | None = None
        self.mirror: Mirror | None = None
        self.health: Health | None = None
        self.publisher: Publisher | None = None
        self.standing: Standing | None = None  # each partition's health, for the status
        self._tg: TaskGroup | None = None

    async def connect(self) -> None:
        await self.bus.connect()
        log.info("cluster: node %s connected to NATS (%d partitions)", self.settings.node,
                 self.settings.partitions)

    async def close(self) -> None:
        await self.bus.close()

    async def start(self, tg: TaskGroup) -> None:
        self._tg = tg
        await tg.start(self.outbox.run, name="cluster outbox")
        # The shared silences and switches read whole before any partition evaluates.
        await tg.start(self.shared.run, name="cluster shared state")
        self.workers = Workers(self._runtime, self.bus, self.shared)
        self.mirror = Mirror(self.bus, self.store)
        self.workers.mirror = self.mirror  # a copy sent again is checked against it
        tg.start_soon(self.workers.run, name="cluster delivery")
        tg.start_soon(self.mirror.run, name="cluster history mirror")
        self.health = Health(self.bus, self.mirror)
        tg.start_soon(self.health.run, name="cluster health")
        self.leases = Leases(self.bus, self._start_partition, self._stop_partition)
        self.standing = Standing(self.bus, self.partitions, self.leases)
        tg.start_soon(self.standing.run, name="cluster partition health")
        self.workers.share.leases = self.leases  # an integration's rate is the cluster's
        assert self.scopes is not None
        self.scopes.tenures = self.leases.tenures  # scope timers fire only on a valid lease
        self.scopes.lease = self.settings.lease
        self.publisher = Publisher(self.bus, tg)

    async def stop(self) -> None:
        log.info("stopping: handing partitions over")
        assert self.leases is not None
        with anyio.move_on_after(self._runtime.settings.drain_timeout):
            await self.leases.leave()

    async def _start_partition(self, number: int) -> None:
        assert self._tg is not None and self.leases is not None and self.scopes is not None
        leases = self.leases

        async def renew() -> bool | None:
            return await leases.renew(number)

        partition = Partition(number, self.bus, self.store, self.scopes, self.outbox, renew,
                              leases.tenure(number))
        self.partitions[number] = partition
        self._tg.start_soon(self._run_partition, partition, name=f"partition {number}")

    async def _run_partition(self, partition: Partition) -> None:
        await partition.run()
        if partition.lost and self.partitions.get(partition.number) is partition:
            # Found lost by its own checkpoint: forget it here too (its lease is gone).
            await self._stop_partition(partition.number)
        elif partition.gave_up and self.leases is not None:
            # It failed again and again here: another node may run it (its disk, its
            # configuration are not this one's).
            if self.standing is not None and partition.failing is not None:
                self.standing.declined[partition.number] = partition.failing
            self.leases.decline(partition.number, partition.backoff.failures)

    async def _stop_partition(self, number: int) -> None:
        partition = self.partitions.pop(number, None)
        if partition is not None:
            await partition.stop()
            assert self.scopes is not None
            await self.scopes.drop(self.scopes.of(number))
        if self.leases is not None and partition is not None and partition.lost:
            self.leases.owned.pop(number, None)
