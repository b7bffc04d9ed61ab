"""The cluster's Publisher, the Router admission takes in cluster mode, against a real
nats-server: each partition keeps the order of one connection's batches, and a
partition whose sending stalls holds no other partition's."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from nats_cluster import NatsCluster

from runhook.cluster.bus import EVENTS, Bus, decode_event, event_subject, partition_of
from runhook.cluster.publish import Publisher
from runhook.config.cluster import Cluster, check
from runhook.core.acks import Ticket
from runhook.core.events import ArtifactCreated, Event, RunMetrics

PARTITIONS = 16
# Two projects whose scopes live in different partitions, found by the same hash the
# publisher uses (which two does not matter, only that they differ).
FIRST = "p0"
SECOND = next(f"p{k}" for k in range(1, 50)
              if partition_of(f"project:acme/p{k}", PARTITIONS)
              != partition_of(f"project:acme/{FIRST}", PARTITIONS))


class Stalling:
    """JetStream as the publisher sees it, except that sending to one subject waits
    until `release` is set: that partition's sending stalls (a full buffer, a slow ack
    path), the others' go on to the real server."""

    def __init__(self, js: Any, subject: str) -> None:
        self._js = js
        self.subject = subject
        self.reached = anyio.Event()
        self.release = anyio.Event()

    async def publish_async(self, subject: str, payload: bytes, **kwargs: Any) -> Any:
        if subject == self.subject:
            self.reached.set()
            await self.release.wait()
        return await self._js.publish_async(subject, payload, **kwargs)


@pytest.fixture
async def bus(short_dir: Path) -> AsyncIterator[Bus]:
    nats = NatsCluster(short_dir / "nats", 1)
    await nats.start()
    problems, settings = check(Cluster(nats=nats.urls, node="a", partitions=PARTITIONS))
    assert problems == [] and settings is not None
    connected = Bus(settings)
    try:
        await connected.connect()
        yield connected
    finally:
        await connected.close()
        await nats.stop()


def loss(project: str, step: int) -> RunMetrics:
    return RunMetrics(entity="acme", project=project, run_id="r1", step=step,
                      values={"loss": 0.5})


def ticket() -> Ticket:
    return Ticket(asyncio.get_running_loop().create_future(), 1)


async def test_a_stalled_partition_holds_no_other_and_each_keeps_its_order(bus: Bus):
    """Batch 1 of FIRST's partition stalls in its sending; batch 2 of the same
    partition is handed behind it, then a batch of SECOND's partition. SECOND's is
    acknowledged while FIRST's are still waiting (a global turn would have held it
    behind them until their 10 s bound refused them). Released, FIRST's two batches
    reach the stream in the order they were handed, after SECOND's."""
    real = bus.js
    stalling = bus.js = Stalling(real, event_subject(  # type: ignore[assignment]
        partition_of(f"project:acme/{FIRST}", PARTITIONS)))
    async with anyio.create_task_group() as tg:
        publisher = Publisher(bus, tg)

        async def hand(event: Event) -> Ticket:
            handed = ticket()
            (destination,) = publisher.route(event)
            await publisher.hand({destination: [(event, 1.0, 1)]}, handed)
            return handed

        first = await hand(loss(FIRST, 1))
        await stalling.reached.wait()
        second = await hand(loss(FIRST, 2))
        other = await hand(loss(SECOND, 3))
        await other.future
        assert other.error is None
        assert not first.future.done() and not second.future.done()
        stalling.release.set()
        await first.future
        await second.future
        assert (first.error, second.error) == (None, None)
    stream = [decode_event((await real.get_msg(EVENTS, seq)).data) for seq in (1, 2, 3)]
    assert [(e.project, e.step) for e in stream] == [  # type: ignore[union-attr]
        (SECOND, 3), (FIRST, 1), (FIRST, 2)]
    assert publisher.published == 3


async def test_every_place_is_published_whatever_this_node_covers(bus: Bus):
    """The publisher knows no automation at all (it takes no configuration): a run
    event goes to its project's partition, an artifact event to its project's and its
    entity's, each copy with its place as its scope and its (id, place) as its
    message id. Before, a node published only to the scopes its own automations
    covered: an event for a scope only another node's newer file had was answered ok
    and dropped."""
    async with anyio.create_task_group() as tg:
        publisher = Publisher(bus, tg)
        run = RunMetrics(entity="acme", project="new3", run_id="r1", values={"loss": 0.5},
                         id="m1")
        created = ArtifactCreated(entity="acme", project="new3", collection="m", version=1,
                                  id="a1")
        assert [d.scope for d in publisher.route(run)] == ["project:acme/new3"]
        assert [d.scope for d in publisher.route(created)] == ["project:acme/new3",
                                                               "entity:acme"]
        batches: dict[Any, list[Any]] = {}
        for line_no, event in enumerate((run, created), 1):
            for destination in publisher.route(event):
                batches.setdefault(destination, []).append((event, 1.0, line_no))
        handed = Ticket(asyncio.get_running_loop().create_future(), len(batches))
        await publisher.hand(batches, handed)
        await handed.future
        assert handed.error is None and not handed.errors
    messages = [await bus.js.get_msg(EVENTS, seq) for seq in (1, 2, 3)]
    assert sorted((m.subject, (m.headers or {})["Runhook-Scope"], (m.headers or {})["Nats-Msg-Id"])
                  for m in messages) == sorted([
        (event_subject(partition_of("project:acme/new3", PARTITIONS)), "project:acme/new3",
         "m1 project:acme/new3"),
        (event_subject(partition_of("project:acme/new3", PARTITIONS)), "project:acme/new3",
         "a1 project:acme/new3"),
        (event_subject(partition_of("entity:acme", PARTITIONS)), "entity:acme",
         "a1 entity:acme project:acme/new3")])
