"""Who owns which partition. Each node keeps a key alive in RUNHOOK_NODES; each
partition's preferred owner among the live nodes is chosen by rendezvous hashing
(every node computes the same answer, and a node leaving or joining moves only
its own share). A partition is owned through a key in RUNHOOK_LEASES that expires
unless renewed: a node killed with -9 loses its partitions one lease later; a node
that stops, or sees a partition preferring another live node, hands it over at
once (last checkpoint written, key deleted)."""

from __future__ import annotations

import asyncio
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
        # Each KV request's bound: a quarter of the lease, so a round of them (the
        # renewals run together) ends well before a lease it renews runs out.
        self.op_s = bus.settings.lease / 4
        # One renewal at a time per partition: two with the same revision would
        # make the loser think the lease lost.
        self._locks: dict[int, asyncio.Lock] = {}
        self._leaving: set[int] = set()  # being handed over (or stopped) in the background
        self._tg: anyio.abc.TaskGroup | None = None

    async def renew(self, partition: int) -> bool | None:
        """Renew the lease now: True; False once another node holds it (or it
        expired); None when NATS did not answer (not known: ask again later)."""
        lock = self._locks.setdefault(partition, asyncio.Lock())
        async with lock:
            revision = self.owned.get(partition)
            if revision is None:
                return False
            try:
                with anyio.fail_after(self.op_s):
                    self.owned[partition] = await self._bus.leases.update(
                        lease_key(partition), self.node.encode(), last=revision)
            except nats.js.errors.KeyWrongLastSequenceError:
                if await self._still_mine(partition):
                    return True
                self.owned.pop(partition, None)
                return False
            except Exception as exc:  # noqa: BLE001 - NATS away for now
                log.warning("cluster: renewing partition %d: %s", partition,
                            str(exc) or type(exc).__name__)
                return None
            return True

    async def _still_mine(self, partition: int) -> bool:
        """After a refused renewal: a renewal that timed out here may have been applied
        there, leaving this node one revision behind its own lease; that revision is
        taken up (the key still names this node), not mistaken for a loss."""
        try:
            with anyio.fail_after(self.op_s):
                entry = await self._bus.leases.get(lease_key(partition))
        except Exception:  # noqa: BLE001 - gone, or not known: not ours to rely on
            return False
        if entry.value != self.node.encode() or entry.revision is None:
            return False
        self.owned[partition] = entry.revision
        return True

    async def run(self) -> None:
        period = self._bus.settings.lease / 3
        async with anyio.create_task_group() as tg:
            self._tg = tg
            while True:
                try:
                    await self.tick()
                except Exception as exc:  # noqa: BLE001 - NATS away: try again next period
                    log.warning("cluster: lease round failed: %s", str(exc) or type(exc).__name__)
                await anyio.sleep(period)

    async def tick(self) -> None:
        """Renew what is owned, hand over what another live node prefers, take what
        this node is preferred for and nobody holds. Handing over runs in the
        background, so a slow stop never holds up the renewal of the others."""
        bus = self._bus
        with anyio.fail_after(self.op_s):
            await bus.nodes.put(self.node, b"1")
        try:
            with anyio.fail_after(self.op_s):
                live = sorted(set(await bus.nodes.keys()) | {self.node})
        except nats.js.errors.NoKeysError:
            live = [self.node]
        if live != self.live:
            log.info("cluster: live nodes: %s", ", ".join(live))
            self.live = live
        # Every renewal at once, each bounded by op_s: a round stays shorter than the
        # lease even when NATS answers nothing (a server lost: 5 s timeouts one after
        # another outlasted a 2 s lease, and every partition was dropped).
        renewed: dict[int, bool | None] = {}

        async def renew(partition: int) -> None:
            renewed[partition] = await self.renew(partition)

        async with anyio.create_task_group() as tg:
            for partition in list(self.owned):
                tg.start_soon(renew, partition)
        for partition in range(bus.settings.partitions):
            want = preferred(partition, live)
            if partition in renewed:
                owned = renewed[partition]
                if owned is False and partition not in self._leaving:
                    log.warning("cluster: lost partition %d", partition)
                    self._background(partition, release=False)
                elif owned and want != self.node and partition not in self._leaving:
                    self._background(partition, release=True)
            elif want == self.node and partition not in self._leaving:
                try:
                    with anyio.fail_after(self.op_s):
                        revision = await bus.leases.create(lease_key(partition),
                                                           self.node.encode())
                except nats.js.errors.KeyWrongLastSequenceError:
                    continue  # its owner has not handed it over yet (or its lease to run out)
                self.owned[partition] = revision
                log.info("cluster: took partition %d", partition)
                await self._start(partition)

    def _background(self, partition: int, release: bool) -> None:
        self._leaving.add(partition)
        if self._tg is not None:
            self._tg.start_soon(self._leave, partition, release)

    async def _leave(self, partition: int, release: bool) -> None:
        try:
            if release:
                await self.release(partition)
            else:
                await self._stop(partition)
        finally:
            self._leaving.discard(partition)

    async def release(self, partition: int) -> None:
        """Stop the partition (it writes its last checkpoint), then free the key."""
        await self._stop(partition)
        async with self._locks.setdefault(partition, asyncio.Lock()):
            revision = self.owned.pop(partition, None)
            if revision is not None:
                try:
                    await self._bus.leases.delete(lease_key(partition), last=revision)
                except Exception as exc:  # noqa: BLE001 - it expires by itself
                    log.warning("cluster: freeing partition %d: %s", partition, exc)
        log.info("cluster: handed partition %d over", partition)

    async def leave(self) -> None:
        """A graceful stop: every partition handed over at once, then this node forgotten."""
        async with anyio.create_task_group() as tg:
            for partition in list(self.owned):  # background hand-overs were cancelled
                tg.start_soon(self.release, partition)
        try:
            await self._bus.nodes.delete(self.node)
        except Exception as exc:  # noqa: BLE001 - it expires by itself
            log.warning("cluster: leaving: %s", exc)
