"""Where each partition's checkpoint is, kept so that only the current owner can
move it. A new owner claims the partition's key (a write that changes its
revision) before it restores; a checkpoint is recorded by a write that names the
revision its writer claimed. An owner that lost the partition without knowing
it (a stall longer than the lease) therefore cannot put an old checkpoint over a
newer one: its write fails, and it stops.

Its executions are fenced alike: claiming publishes the partition's fence (a
message on runhook.fence.<n> in the history stream), and the owner publishes
each history record of its executions on the condition that the fence's last
sequence is still its own (Nats-Expected-Last-Subject-Sequence), before any of
them goes to the work queue. Once a new owner claimed, JetStream refuses the old
one's records, so nothing it made after losing the partition is delivered."""

from __future__ import annotations

import logging
import time
from datetime import datetime

import anyio
import msgspec
import nats.js.errors

from runhook.cluster.bus import HISTORY, Bus, lease_key

log = logging.getLogger("runhook.cluster")
CHECKPOINT_READ_S = 30.0


class Lost(Exception):
    """The partition went to another node: stop without writing anything."""


def fence_subject(partition: int) -> str:
    return f"runhook.fence.{partition}"


def fenced(fence: int, partition: int) -> dict[str, str]:
    """The headers that make a history publish conditional on `fence` being current."""
    return {"Nats-Expected-Last-Subject-Sequence": str(fence),
            "Nats-Expected-Last-Subject-Sequence-Subject": fence_subject(partition)}


class Position(msgspec.Struct, array_like=True):
    seq: int  # the last stream sequence the checkpoint holds
    name: str  # its object in RUNHOOK_CHECKPOINTS; "" before the first


class Positions:
    def __init__(self, bus: Bus, partition: int) -> None:
        self._bus = bus
        self._partition = partition
        self._key = lease_key(partition)
        self._revision = 0
        self.position = Position(0, "")
        self.fence = 0  # the sequence of this owner's fence in the history stream
        self.written_at: float | None = None  # the checkpoint's writer's clock, when it wrote

    async def claim(self) -> bytes | None:
        """Take the key (fencing out earlier owners); the checkpoint's data, if any."""
        kv = self._bus.positions
        try:
            entry = await kv.get(self._key)
        except nats.js.errors.KeyNotFoundError:
            entry = None
        try:
            if entry is None or entry.value is None:
                self._revision = await kv.create(self._key, msgspec.msgpack.encode(
                    Position(0, "")))
                self.position = Position(0, "")
                return None
            self.position = msgspec.msgpack.decode(entry.value, type=Position)
            self._revision = await kv.update(self._key, entry.value, last=entry.revision)
        except nats.js.errors.KeyWrongLastSequenceError:
            raise Lost() from None  # another node claimed it between our read and write
        ack = await self._bus.js.publish(fence_subject(self._partition),
                                         self._bus.settings.node.encode(), stream=HISTORY)
        self.fence = ack.seq
        if not self.position.name:
            return None
        # Bounded: nats-py's read of an object removed meanwhile (an earlier owner's
        # checkpoint replaced under us) waits forever; a failure restarts the partition,
        # which reads the position again.
        with anyio.fail_after(CHECKPOINT_READ_S):
            found = await self._bus.checkpoints.get(self.position.name)
        self.written_at = _time(found.info.mtime)
        return found.data or b""

    @property
    def writer(self) -> str:
        """The node that wrote the checkpoint (its name says so, whatever its data)."""
        return self.position.name.split("-", 2)[2] if self.position.name.count("-") >= 2 \
            else ""

    async def save(self, seq: int, data: bytes, node: str) -> None:
        """Store a checkpoint and make it the partition's; Lost if another node claimed
        the partition since (its checkpoint then stays, ours is removed)."""
        name = f"{self._key}-{seq}-{node}"
        await self._bus.checkpoints.put(name, data)
        new = Position(seq, name)
        try:
            self._revision = await self._bus.positions.update(
                self._key, msgspec.msgpack.encode(new), last=self._revision)
        except nats.js.errors.KeyWrongLastSequenceError:
            await self._remove(name)
            raise Lost() from None
        old, self.position = self.position, new
        self.written_at = time.time()
        if old.name and old.name != name:
            await self._remove(old.name)

    async def _remove(self, name: str) -> None:
        try:
            await self._bus.checkpoints.delete(name)
        except Exception as exc:  # noqa: BLE001 - a leftover object is only space
            log.debug("cluster: removing checkpoint %s: %s", name, exc)


def _time(stamp: str | None) -> float | None:
    """An object's modification time, as its writer's clock gave it (nats-py writes
    it in ISO 8601)."""
    try:
        return datetime.fromisoformat(stamp).timestamp() if stamp else None
    except ValueError:
        return None
