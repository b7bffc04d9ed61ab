"""Who owns which partition. Each node keeps a key alive in RUNHOOK_NODES; each
partition's preferred owner among the live nodes is chosen by rendezvous hashing
(every node computes the same answer, and a node leaving or joining moves only
its own share). A partition is owned through a key in RUNHOOK_LEASES that expires
unless renewed: a node killed with -9 loses its partitions one lease later; a node
that stops, or sees a partition preferring another live node, hands it over at
once (last checkpoint written, key deleted).

An owner acts (fires a timer, evaluates a batch, publishes an execution) only
while its `Tenure` says the lease is valid: until the start of its last successful
renewal plus the lease, less a margin. The key cannot have expired before that on
the server (its TTL counts from when the server stored the renewal, later than
the start), so no other node can hold the partition while this one acts; a node
paused past that (SIGSTOP, a VM frozen) wakes up with its tenure over and acts on
nothing until a renewal succeeds, which it cannot once another node took the key.

A node that cannot run a partition (`GIVE_UP_AFTER` failures in a row) declines
it for `DECLINE_S`: it says so in its RUNHOOK_NODES entry and frees the key, and
every node leaves it out when choosing that partition's owner."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Awaitable, Callable

import anyio
import msgspec
import nats.js.errors

from runhook.cluster.bus import Bus, lease_key

log = logging.getLogger("runhook.cluster")
# The share of the lease an owner does not count on: what a renewal's answer, a
# pause between the check and the act, and the clocks' rates may take. With the
# renewals every third of the lease, a quarter leaves two renewals of slack.
MARGIN = 0.25
# After this many failures of a partition in a row (back-off 1 + 2 + 4 s between
# them: longer than a JetStream leader election, so a NATS blip moves nothing) the
# node declines the partition, for this long, so that another node can try it.
DECLINE_S = 300.0


class Tenure:
    """What an owner knows of its lease on one partition: valid until a monotonic
    deadline set by each successful renewal; over once lost or handed over."""

    def __init__(self, lease: float) -> None:
        self._keep = lease * (1.0 - MARGIN)
        self.until = 0.0
        self.over = False
        self._renewed = anyio.Event()

    def renewed(self, asked_at: float) -> None:
        """A renewal asked at `asked_at` (monotonic) succeeded."""
        if self.over:
            return
        self.until = max(self.until, asked_at + self._keep)
        self._renewed.set()
        self._renewed = anyio.Event()

    def end(self) -> None:
        self.over = True
        self.until = 0.0
        self._renewed.set()

    def valid(self) -> bool:
        return not self.over and time.monotonic() < self.until

    async def confirm(self, timeout: float) -> bool:
        """True once the lease is known valid (at once if it is); False if it is
        over, or no renewal made it valid within `timeout`."""
        with anyio.move_on_after(timeout):
            while not self.valid():
                if self.over:
                    return False
                await self._renewed.wait()
            return True
        return False


def declined_by(value: bytes | None) -> set[int]:
    """The partitions a node's RUNHOOK_NODES entry declines (b"1": none)."""
    if not value or value == b"1":
        return set()
    try:
        return set(msgspec.msgpack.decode(value, type=list[int]))
    except msgspec.DecodeError:
        return set()


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
        self.tenures: dict[int, Tenure] = {}  # partition -> what this node knows of its lease
        self.declined: dict[int, float] = {}  # partition -> until when (monotonic)
        self._declines: dict[str, set[int]] = {}  # live node -> the partitions it declines
        self.live: list[str] = []
        self.counted = anyio.Event()  # set once a lease round has listed the live nodes
        # Each KV request's bound: a quarter of the lease, so a round of them (the
        # renewals run together) ends well before a lease it renews runs out.
        self.op_s = bus.settings.lease / 4
        # One renewal at a time per partition: two with the same revision would
        # make the loser think the lease lost.
        self._locks: dict[int, anyio.Lock] = {}
        self._leaving: set[int] = set()  # being handed over (or stopped) in the background
        self._tg: anyio.abc.TaskGroup | None = None

    async def renew(self, partition: int) -> bool | None:
        """Renew the lease now: True; False once another node holds it (or it
        expired); None when NATS did not answer (not known: ask again later)."""
        lock = self._locks.setdefault(partition, anyio.Lock())
        async with lock:
            revision = self.owned.get(partition)
            tenure = self.tenures.get(partition)
            if revision is None or tenure is None:
                return False
            asked_at = time.monotonic()
            try:
                with anyio.fail_after(self.op_s):
                    self.owned[partition] = await self._bus.leases.update(
                        lease_key(partition), self.node.encode(), last=revision)
            except nats.js.errors.KeyWrongLastSequenceError:
                if await self._still_mine(partition):
                    tenure.renewed(asked_at)
                    return True
                self.owned.pop(partition, None)
                tenure.end()
                return False
            except Exception as exc:  # noqa: BLE001 - NATS away for now
                log.warning("cluster: renewing partition %d: %s", partition,
                            str(exc) or type(exc).__name__)
                return None
            tenure.renewed(asked_at)
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

    def tenure(self, partition: int) -> Tenure:
        """The partition's tenure (made when the lease is taken)."""
        return self.tenures[partition]

    def decline(self, partition: int, failures: int) -> None:
        """This node could not run `partition`: leave it to the others for a while
        (the next lease round says so) and hand it over now."""
        self.declined[partition] = time.monotonic() + DECLINE_S
        log.warning("cluster: partition %d failed %d times in a row here; declining it for "
                    "%.0fs so that another node takes it", partition, failures, DECLINE_S)
        if partition in self.owned and partition not in self._leaving:
            self._background(partition, release=True)

    def _entry(self) -> bytes:
        now = time.monotonic()
        for partition, until in list(self.declined.items()):
            if until <= now:
                del self.declined[partition]
        return msgspec.msgpack.encode(sorted(self.declined)) if self.declined else b"1"

    def _candidates(self, partition: int, live: list[str]) -> list[str]:
        """The live nodes that do not decline `partition` (all of them if every one does)."""
        willing = [n for n in live if partition not in self._declines.get(n, ())]
        return willing or live

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
            await bus.nodes.put(self.node, self._entry())
        try:
            with anyio.fail_after(self.op_s):
                live = sorted(set(await bus.nodes.keys()) | {self.node})
        except nats.js.errors.NoKeysError:
            live = [self.node]
        if live != self.live:
            log.info("cluster: live nodes: %s", ", ".join(live))
            self.live = live
            self.counted.set()
        declines = {self.node: set(self.declined)}
        with anyio.move_on_after(self.op_s):  # else the others' as last known
            for other in live:
                if other != self.node:
                    try:
                        declines[other] = declined_by((await bus.nodes.get(other)).value)
                    except nats.js.errors.KeyNotFoundError:
                        continue  # gone since the listing
        self._declines = {n: declines.get(n, self._declines.get(n, set())) for n in live}
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
            want = preferred(partition, self._candidates(partition, live))
            if partition in renewed:
                owned = renewed[partition]
                if owned is False and partition not in self._leaving:
                    log.warning("cluster: lost partition %d", partition)
                    self._background(partition, release=False)
                elif owned and want != self.node and partition not in self._leaving:
                    self._background(partition, release=True)
            elif want == self.node and partition not in self._leaving:
                asked_at = time.monotonic()
                try:
                    with anyio.fail_after(self.op_s):
                        revision = await bus.leases.create(lease_key(partition),
                                                           self.node.encode())
                except nats.js.errors.KeyWrongLastSequenceError:
                    continue  # its owner has not handed it over yet (or its lease to run out)
                self.owned[partition] = revision
                tenure = self.tenures[partition] = Tenure(bus.settings.lease)
                tenure.renewed(asked_at)
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
        async with self._locks.setdefault(partition, anyio.Lock()):
            tenure = self.tenures.pop(partition, None)
            if tenure is not None:
                tenure.end()  # nothing acts on it from here: the key is freed next
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
