"""A cluster node: the single-machine daemon's ingress, console and queries, with
evaluation moved to the partitions this node owns and delivery to the shared
work queue (DESIGN §13). Its SQLite holds the mirrored history and a cache of
its partitions' state; JetStream holds everything that must survive the node."""

from __future__ import annotations

import logging
import time

import anyio

from runhook import __version__, systemd
from runhook.app.daemon import DRAIN_CONNECTIONS_S, Daemon
from runhook.app.housekeeping import Housekeeping
from runhook.cluster.bus import Bus
from runhook.cluster.deliver import Counts, Workers
from runhook.cluster.leases import Leases
from runhook.cluster.mirror import Mirror
from runhook.cluster.outbox import ClusterStore, Outbox
from runhook.cluster.partition import Partition
from runhook.cluster.publish import Publisher
from runhook.cluster.scopes import ClusterScopes
from runhook.config.cluster import ClusterSettings
from runhook.config.settings import Settings
from runhook.core.status import DaemonStatus, IntegrationStatus
from runhook.delivery.actor import Deliveries
from runhook.ingest import protocol, silencing
from runhook.ingest.ingress import Ingress
from runhook.ingest.protocol import Query
from runhook.web import remote as web_remote
from runhook.web import server as web_server
from runhook.web.session import Login

log = logging.getLogger("runhook")
# Commands that change state held by one node only (silences, an integration's
# switch) or drive the local delivery actors: not in cluster mode yet.
_LOCAL_ONLY = (protocol.Enable, protocol.Redeliver, protocol.TestIntegration,
               protocol.SilenceAdd, protocol.SilenceExpire)

_COMMANDS = {protocol.Enable: "enable", protocol.Redeliver: "redeliver",
             protocol.TestIntegration: "test", protocol.SilenceAdd: "silence add",
             protocol.SilenceExpire: "silence expire"}


class ClusterDaemon(Daemon):
    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        assert settings.cluster is not None
        self.cluster: ClusterSettings = settings.cluster
        self.bus = Bus(self.cluster)
        self.outbox = Outbox(self.bus)
        self.store = ClusterStore(settings.config.server.database)
        self.store.outbox = self.outbox
        self.store.on_batch = self.metrics.batches.observe
        self.deliveries = Deliveries(self, self.store)  # never started: see Workers
        self.partitions: dict[int, Partition] = {}
        self.leases: Leases | None = None
        self.workers: Workers | None = None
        self.mirror: Mirror | None = None
        self._partition_tg: anyio.abc.TaskGroup | None = None
        self.publisher: Publisher | None = None

    async def run(self) -> None:
        server = self.settings.config.server
        await self.store.open()
        try:
            await self.bus.connect()
            log.info("cluster: node %s connected to NATS (%d partitions)", self.cluster.node,
                     self.cluster.partitions)
            self.silences.all = (await silencing.load(self.store, time.time())).all
            async with anyio.create_task_group() as root:
                await root.start(self._run_writer)
                root.start_soon(self._signals, name="signals")
                async with anyio.create_task_group() as scope_tg:
                    scopes = ClusterScopes(self, self.store, self.deliveries, scope_tg,
                                           self.silences, self.cluster.partitions)
                    self.scopes = scopes
                    async with anyio.create_task_group() as work:
                        self._partition_tg = work
                        self.workers = Workers(self, self.bus)
                        self.mirror = Mirror(self.bus, self.store)
                        work.start_soon(self.workers.run, name="cluster delivery")
                        work.start_soon(self.mirror.run, name="cluster history mirror")
                        leases = self.leases = Leases(self.bus, self._start_partition,
                                                      self._stop_partition)
                        publisher = self.publisher = Publisher(lambda: self.settings, self.bus)
                        self.ingress = Ingress(publisher, self.store,  # type: ignore[arg-type]
                                               self._query)
                        async with anyio.create_task_group() as front:
                            await front.start(self.ingress.serve, server.socket,
                                              server.socket_mode)
                            if server.http:
                                self.console_login = Login(server.socket, server.socket_mode,
                                                           server.http)
                                await front.start(web_server.serve, web_server.make_app(
                                    self, self.store, self.console_login), server.http)
                            if self.settings.remote is not None:
                                await front.start(web_remote.serve, web_remote.make_app(
                                    lambda: self.settings, self.ingress,
                                    self.store), self.settings.remote)
                            front.start_soon(leases.run, name="cluster leases")
                            housekeeping = Housekeeping(self, self.store, scopes, self.activity)
                            front.start_soon(housekeeping.run, name="housekeeping")
                            systemd.notify(f"READY=1\nSTATUS={self._summary()}")
                            log.info("runhook %s ready (cluster node %s): %s", __version__,
                                     self.cluster.node, self._summary())
                            await self._stop.wait()
                            systemd.notify("STOPPING=1")
                            log.info("stopping: answering in-flight lines")
                            self.ingress.stop_accepting()
                            await self.ingress.drain(DRAIN_CONNECTIONS_S)
                            front.cancel_scope.cancel()
                        log.info("stopping: handing partitions over")
                        with anyio.move_on_after(self.settings.drain_timeout):
                            await leases.leave()
                        work.cancel_scope.cancel()
                    scopes.close()
                self.store.finish()
                await self._writer_done.wait()
                root.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await self.bus.close()
                await self.store.close()
        log.info("stopped")

    async def _start_partition(self, number: int) -> None:
        assert self._partition_tg is not None and self.leases is not None
        assert isinstance(self.scopes, ClusterScopes)
        leases = self.leases

        async def renew() -> bool | None:
            return await leases.renew(number)

        partition = Partition(number, self.bus, self.store, self.scopes, self.outbox, renew)
        self.partitions[number] = partition
        self._partition_tg.start_soon(self._run_partition, partition, name=f"partition {number}")

    async def _run_partition(self, partition: Partition) -> None:
        await partition.run()
        if partition.lost and self.partitions.get(partition.number) is partition:
            # Found lost by its own checkpoint: forget it here too (its lease is gone).
            await self._stop_partition(partition.number)

    async def _stop_partition(self, number: int) -> None:
        partition = self.partitions.pop(number, None)
        if partition is not None:
            await partition.stop()
            assert isinstance(self.scopes, ClusterScopes)
            await self.scopes.drop(self.scopes.of(number))
        if self.leases is not None and partition is not None and partition.lost:
            self.leases.owned.pop(number, None)

    async def reload(self) -> list[str]:
        """As on one machine; every node must be given the same file (a scope's
        automations are evaluated by whichever node owns its partition)."""
        problems = await super().reload()
        if not problems and self.publisher is not None:
            self.publisher.reconfigure()  # scopes may have gained or lost automations
        return problems

    async def _query(self, query: Query) -> bytes:
        if isinstance(query, _LOCAL_ONLY):
            command = _COMMANDS.get(type(query), str(query.__struct_config__.tag))
            return protocol.refusal(f"`runhook {command}` is not available in cluster mode "
                                    "yet (it changes state one node holds)")
        return await super()._query(query)

    def status(self) -> DaemonStatus:
        status = super().status()
        settings = self.settings
        status.integrations = [  # this node's deliveries (each node delivers its share)
            IntegrationStatus(name=name, kind=str(integration.__struct_config__.tag),
                              rate=integration.rate, in_flight=counts.in_flight,
                              sent=counts.sent, last_error=counts.last_error, disabled=None)
            for name, integration in settings.integrations.items()
            for counts in [self.workers.counts.get(name, Counts()) if self.workers
                           else Counts()]]
        status.cluster = {"node": self.cluster.node, "of": self.cluster.partitions,
                          "live": self.leases.live if self.leases else [],
                          "partitions": sorted(self.partitions)}
        return status

    def activity(self) -> dict[str, int]:
        counts = super().activity()
        counts["partitions"] = len(self.partitions)
        if self.workers is not None:
            counts["delivered"] = self.workers.sent
        return counts


async def main(settings: Settings) -> None:
    await ClusterDaemon(settings).run()
