"""Each partition's health as `runhook status` shows it (docs/cluster.md, Operations):
who holds its lease, how many events its owner has not evaluated yet, its last
checkpoint, its back-off, and a checkpoint that could not be read."""

from __future__ import annotations

import logging
import time

import anyio
import msgspec
import nats.js.errors
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from runhook.cluster.bus import EVENTS, Bus, event_subject, lease_key
from runhook.cluster.leases import Leases
from runhook.cluster.partition import Partition

log = logging.getLogger("runhook.cluster")
PROBE_S = 1.0  # how often an owned partition's lag is asked of JetStream
PROBE_TIMEOUT_S = 2.0
# How often the lease bucket is asked who holds the partitions this node does not
# (a read per partition: less often than the lag, which matters more).
OWNERS_EVERY = 5


class CheckpointStatus(msgspec.Struct, kw_only=True):
    seq: int  # the last stream sequence whose effects it holds
    node: str  # the node that wrote it
    age_s: float | None  # since it was written, on its writer's clock (None: not known)


class PartitionStatus(msgspec.Struct, kw_only=True):
    number: int
    owner: str | None  # the node holding its lease; None: nobody (or not read yet)
    # "running" (following the stream), "starting" (restoring its checkpoint),
    # "back-off" (failed: starts again at retry_in_s), "declined" (failed too often
    # here: left to other nodes), "elsewhere" (another node's) or "unowned".
    state: str
    # Events in its stream subject after what its owner has evaluated, as of the last
    # probe (at most PROBE_S old); None where this node does not own it.
    lag: int | None = None
    checkpoint: CheckpointStatus | None = None  # the last one, owned partitions only
    failures: int = 0  # in a row
    retry_in_s: float | None = None
    failing: str | None = None  # the last failure, while in back-off or declined
    # "checkpoint corrupt: <why>; <what the node did>", kept for this ownership.
    corrupt: str | None = None


class Standing:
    """Probes JetStream for the owned partitions' lag and the lease bucket for the
    others' owners; `report` reads only what they found (the status is synchronous)."""

    def __init__(self, bus: Bus, owned: dict[int, Partition], leases: Leases) -> None:
        self._bus = bus
        self._owned = owned  # the node's own dict: partitions come and go in it
        self._leases = leases
        self.lags: dict[int, int] = {}
        self.owners: dict[int, str | None] = {}
        self.declined: dict[int, str] = {}  # why this node declined each (the last failure)

    async def run(self) -> None:
        rounds = 0
        while True:
            try:
                with anyio.fail_after(PROBE_TIMEOUT_S):
                    await self._lags()
                if rounds % OWNERS_EVERY == 0:
                    with anyio.fail_after(PROBE_TIMEOUT_S):
                        await self._owners()
            except Exception as exc:  # noqa: BLE001 - the status says "not known" meanwhile
                log.debug("cluster: probing partitions: %s", str(exc) or type(exc).__name__)
            rounds += 1
            await anyio.sleep(PROBE_S)

    async def _lags(self) -> None:
        lags: dict[int, int] = {}

        async def one(partition: Partition) -> None:
            try:
                lag = await self.lag(partition)
            except Exception as exc:  # noqa: BLE001 - its consumer went meanwhile: not known
                log.debug("cluster: partition %d's lag: %s", partition.number,
                          str(exc) or type(exc).__name__)
                return
            if lag is not None:
                lags[partition.number] = lag

        async with anyio.create_task_group() as tg:
            for partition in list(self._owned.values()):
                tg.start_soon(one, partition)
        self.lags = lags

    async def lag(self, partition: Partition) -> int | None:
        """The consumer's pending count (JetStream keeps it; no message is read), plus
        what was read and is not committed yet. A partition not following the stream
        (in back-off, refused) is counted from its position by a consumer made for
        the count and deleted at once."""
        subscription = partition.subscription
        if subscription is not None:
            info = await subscription.consumer_info()
            return int(info.num_pending or 0) + partition.in_hand
        if not partition.claimed:
            return None  # its position is not read yet
        js = self._bus.js
        info = await js.add_consumer(EVENTS, config=ConsumerConfig(
            filter_subject=event_subject(partition.number),
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=partition.positions.position.seq + 1, ack_policy=AckPolicy.NONE,
            inactive_threshold=10.0, mem_storage=True))
        try:
            await js.delete_consumer(EVENTS, info.name)
        except Exception as exc:  # noqa: BLE001 - it expires by itself
            log.debug("cluster: deleting a counting consumer: %s", exc)
        return int(info.num_pending or 0)

    async def _owners(self) -> None:
        owners: dict[int, str | None] = {}

        async def one(number: int) -> None:
            try:
                entry = await self._bus.leases.get(lease_key(number))
            except nats.js.errors.KeyNotFoundError:
                owners[number] = None
                return
            owners[number] = entry.value.decode() if entry.value else None

        async with anyio.create_task_group() as tg:
            for number in range(self._bus.settings.partitions):
                if number not in self._owned:
                    tg.start_soon(one, number)
        self.owners = owners

    def report(self) -> list[PartitionStatus]:
        now, node = time.time(), self._bus.settings.node
        out = []
        for number in range(self._bus.settings.partitions):
            partition = self._owned.get(number)
            if partition is None:
                owner = self.owners.get(number)
                why = self.declined.get(number) if number in self._leases.declined else None
                state = "declined" if why is not None else \
                    "unowned" if owner is None else "elsewhere"
                out.append(PartitionStatus(number=number, owner=owner, state=state,
                                           failing=why))
                continue
            out.append(self._owned_status(partition, node, now))
        return out

    def _owned_status(self, partition: Partition, node: str, now: float) -> PartitionStatus:
        positions = partition.positions
        point = positions.position
        checkpoint = None
        if partition.claimed and point.name:
            at = positions.written_at
            checkpoint = CheckpointStatus(seq=point.seq, node=positions.writer,
                                          age_s=None if at is None else round(now - at, 3))
        retry = partition.retry_at
        state = "back-off" if partition.failing is not None else \
            "running" if partition.subscription is not None else "starting"
        return PartitionStatus(
            number=partition.number, owner=node, state=state,
            lag=self.lags.get(partition.number), checkpoint=checkpoint,
            failures=partition.backoff.failures,
            retry_in_s=None if retry is None else round(max(0.0, retry - now), 3),
            failing=partition.failing, corrupt=partition.corrupt)
