"""An integration's `rate` across the cluster (docs/cluster.md): every node delivers,
so each paces its attempts to the rate divided by the live nodes, as its lease round
last counted them in RUNHOOK_NODES. It costs no NATS message per attempt; the rate
holds across nodes, and is under-used while some nodes have less to send."""

from __future__ import annotations

import logging

import anyio

from runhook.cluster.leases import Leases

log = logging.getLogger("runhook.cluster.delivery")


def share(live: int) -> float:
    """A node's share of each integration's rate when `live` nodes deliver (all of
    it when alone, or while no node was counted)."""
    return 1.0 / max(1, live)


class Share:
    """This node's share of every integration's rate, for the delivery workers."""

    def __init__(self, lease: float) -> None:
        self.leases: Leases | None = None  # set once the lease keeper is made
        self._lease = lease
        self._live = 0

    async def now(self) -> float:
        """1 / the live nodes. Before the first lease round has counted them, that
        round is waited for (up to a lease): a node that took the whole rate
        meanwhile would add its burst to every other node's."""
        leases = self.leases
        if leases is None:
            return 1.0
        if not leases.counted.is_set():
            with anyio.move_on_after(self._lease):
                await leases.counted.wait()
        live = len(leases.live)
        if live != self._live:
            self._live = live
            log.info("cluster: each integration's rate is shared by %d live nodes: 1/%d of "
                     "it here", live, max(1, live))
        return share(live)
