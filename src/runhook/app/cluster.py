"""A cluster node (docs/cluster.md): the single-machine daemon's lifecycle, ingress,
console and queries, with evaluation moved to the partitions this node owns and
delivery to the shared work queue (the cluster room's `Node` supplies those parts).
Its SQLite holds the mirrored history and a cache of its partitions' state;
JetStream holds everything that must survive the node."""

from __future__ import annotations

from typing import Any

from anyio.abc import TaskGroup

from runhook.app.daemon import Daemon
from runhook.app.lifecycle import Layer, Part, Task
from runhook.app.parts import Evaluation
from runhook.cluster.commands import ClusterCommands
from runhook.cluster.deliver import Counts
from runhook.cluster.node import Node
from runhook.cluster.outbox import ClusterStore
from runhook.cluster.scopes import ClusterScopes
from runhook.config.cluster import ClusterSettings
from runhook.config.settings import Settings
from runhook.core.status import DaemonStatus, IntegrationStatus
from runhook.evaluate.routing import Router, Scopes
from runhook.ingest.ingress import Ingress


class ClusterDaemon(Daemon):
    """The same lifecycle and ways in as one machine; its middle layers are the
    cluster's: the scope actors of owned partitions, then the `Node` (workers,
    mirror, partitions). Its delivery actors are never started (see Workers)."""

    def __init__(self, settings: Settings) -> None:
        assert settings.cluster is not None
        super().__init__(settings, ClusterStore(settings.config.server.database))
        assert isinstance(self.store, ClusterStore)
        self.cluster: ClusterSettings = settings.cluster
        self.node = Node(self, self.cluster, self.store, self.silences)
        # Silences, enable, redeliver and test: the cluster's, from the socket, the
        # HTTPS API and the console alike (ingest/commands.py asks for these first).
        self.shared_commands = ClusterCommands(self, self.node.bus, self.node.shared)
        self.ready_line = f" (cluster node {self.cluster.node})"

    async def connect(self) -> None:
        await self.node.connect()

    async def disconnect(self) -> None:
        await self.node.close()

    def layers(self) -> list[Layer]:
        """The writer, the scope actors of owned partitions, the node's parts, the
        ways in (events go to the publisher; the lease keeper runs with them)."""
        evaluation = Evaluation(self._cluster_scopes)
        return [self.root, lambda: [evaluation], lambda: [self.node],
                lambda: self.front(self._publisher(), None, self._leases)]

    async def _cluster_scopes(self, tg: TaskGroup) -> Scopes:
        scopes = ClusterScopes(self, self.store, self.deliveries, tg, self.silences,
                               self.cluster.partitions)
        self.scopes = self.node.scopes = scopes
        return scopes

    def _publisher(self) -> Router[Any]:
        assert self.node.publisher is not None
        return self.node.publisher

    def _leases(self, ingress: Ingress) -> list[Part]:
        assert self.node.leases is not None
        return [Task("cluster leases", self.node.leases.run)]

    async def reload(self) -> list[str]:
        """As on one machine; every node must be given the same file (a scope's
        automations are evaluated by whichever node owns its partition)."""
        problems = await super().reload()
        if not problems and self.node.publisher is not None:
            self.node.publisher.reconfigure()  # scopes may have gained or lost automations
        return problems

    def status(self) -> DaemonStatus:
        status = super().status()
        settings = self.settings
        workers, leases = self.node.workers, self.node.leases
        status.integrations = [  # this node's deliveries (each node delivers its share)
            IntegrationStatus(name=name, kind=str(integration.__struct_config__.tag),
                              rate=integration.rate, in_flight=counts.in_flight,
                              sent=counts.sent, last_error=counts.last_error,
                              disabled=self.node.shared.disabled.get(name))
            for name, integration in settings.integrations.items()
            for counts in [workers.counts.get(name, Counts()) if workers else Counts()]]
        status.cluster = {"node": self.cluster.node, "of": self.cluster.partitions,
                          "live": leases.live if leases else [],
                          "partitions": sorted(self.node.partitions),
                          # Owned, but starting again after a failure (and why).
                          "backoff": {str(number): partition.failing for number, partition
                                      in sorted(self.node.partitions.items())
                                      if partition.failing is not None}}
        if self.node.standing is not None:  # each partition's owner, lag, checkpoint
            status.cluster["partition_status"] = self.node.standing.report()
        health = self.node.health
        if health is not None:  # NATS reachability and the history mirror's lag
            status.cluster.update(health.report())
        if workers is not None:
            status.cluster["unrecorded"] = workers.unrecorded
        # Shared bucket entries not applied (malformed, past a bound, under another key).
        status.cluster["refused_entries"] = self.node.shared.refused
        return status

    async def readiness(self) -> dict[str, bool]:
        """One machine's checks, and: JetStream answers (every line is refused while it
        does not), and the history mirror is not wedged (this node's history and
        console would go stale)."""
        checks = await super().readiness()
        health = self.node.health
        checks["nats"] = health is not None and health.reachable
        checks["history"] = health is not None and not health.wedged
        return checks

    def activity(self) -> dict[str, int]:
        counts = super().activity()
        counts["partitions"] = len(self.node.partitions)
        if self.node.workers is not None:
            counts["delivered"] = self.node.workers.sent
        return counts


async def main(settings: Settings) -> None:
    await ClusterDaemon(settings).run()
