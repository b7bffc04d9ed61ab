"""Who owns which partition. Each node keeps a key alive in RUNHOOK_NODES; each
partition's preferred owner among the live nodes is chosen by rendezvous hashing
(every node computes the same answer, and a node leaving or joining moves only
its own share). A partition is owned through a key in RUNHOOK_LEASES that expires
unless renewed: a node killed with -9 loses its partitions one lease later; a node
that stops, or sees a partition preferring another live node, hands it over at
once (last checkpoint written, key deleted)."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable, Callable

import anyio
import nats.js.errors

from runhook.cluster.bus import Bus, lease_key

log = logging.getLogger("runhook.cluster")


def preferred(partition: int, nodes: list[str]) -> str:
    """Rendezvous (highest random weight) hashing: stable, and minimal moves."""
    def weight(node: str) -> bytes:
        return hashlib.blake2b(f"{partition}|{node}".encode(), digest_size=8).digest()
    return max(nodes, key=weight)


class Leases:
    def __init__(self, bus: Bus, start: Callable[[int], Awaitable[None]],
                 stop: Callable[[int], Awaitable[None]]) -> None:
        self._bus = bus
        self._start = start
        self._stop = stop
        self.node = bus.settings.node
        self.owned: dict[int, int] = {}  # partition -> the lease key's revision
        self.live: list[str] = []

    async def still_owned(self, partition: int) -> bool:
        """Renew the lease now; False once another node holds it (or it expired)."""
        revision = self.owned.get(partition)
        if revision is None:
            return False
        try:
            self.owned[partition] = await self._bus.leases.update(
                lease_key(partition), self.node.encode(), last=revision)
        except nats.js.errors.KeyWrongLastSequenceError:
            self.owned.pop(partition, None)
            return False
        except Exception as exc:  # noqa: BLE001 - NATS unreachable: not provably ours
            log.warning("cluster: renewing partition %d: %s", partition, exc)
            return False
        return True

    async def run(self) -> None:
        period = self._bus.settings.lease / 3
        while True:
            try:
                await self.tick()
            except Exception as exc:  # noqa: BLE001 - NATS away: try again next period
                log.warning("cluster: lease round failed: %s", exc or type(exc).__name__)
            await anyio.sleep(period)

    async def tick(self) -> None:
        bus = self._bus
        await bus.nodes.put(self.node, b"1")
        try:
            live = sorted(set(await bus.nodes.keys()) | {self.node})
        except nats.js.errors.NoKeysError:
            live = [self.node]
        if live != self.live:
            log.info("cluster: live nodes: %s", ", ".join(live))
            self.live = live
        for partition in range(bus.settings.partitions):
            want = preferred(partition, live)
            if partition in self.owned:
                if not await self.still_owned(partition):
                    log.warning("cluster: lost partition %d", partition)
                    await self._stop(partition)
                elif want != self.node:
                    await self.release(partition)
            elif want == self.node:
                try:
                    revision = await bus.leases.create(lease_key(partition), self.node.encode())
                except nats.js.errors.KeyWrongLastSequenceError:
                    continue  # its owner has not handed it over yet (or its lease to run out)
                self.owned[partition] = revision
                log.info("cluster: took partition %d", partition)
                await self._start(partition)

    async def release(self, partition: int) -> None:
        """Stop the partition (it writes its last checkpoint), then free the key."""
        await self._stop(partition)
        revision = self.owned.pop(partition, None)
        if revision is not None:
            try:
                await self._bus.leases.delete(lease_key(partition), last=revision)
            except Exception as exc:  # noqa: BLE001 - it expires by itself
                log.warning("cluster: freeing partition %d: %s", partition, exc)
        log.info("cluster: handed partition %d over", partition)

    async def leave(self) -> None:
        """A graceful stop: every partition handed over, then this node forgotten."""
        for partition in list(self.owned):
            await self.release(partition)
        try:
            await self._bus.nodes.delete(self.node)
        except Exception as exc:  # noqa: BLE001 - it expires by itself
            log.warning("cluster: leaving: %s", exc)
