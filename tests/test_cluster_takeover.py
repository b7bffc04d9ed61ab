"""What a partition's deadlines do across a takeover (kill -9 of its owner), on real
nats-server and runhook processes (docs/cluster.md, what survives a takeover): a
stall counts from the run's last values as on one machine, not from the takeover,
and fires once; a stall the old owner fired after its last checkpoint is fired
again by the new owner under the same id (JetStream drops the copy)."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from conftest import Receiver, eventually
from nats_cluster import NatsCluster, node_config
from test_cluster import Node, balanced, history, start_node, status, stop_node

from runhook.client import AsyncClient
from runhook.cluster.bus import partition_of
from runhook.cluster.checkpoint import Snapshot, Times, decode, watched_since

PARTITIONS = 8
SCOPE = "project:acme/p0"
PARTITION = partition_of(SCOPE, PARTITIONS)
SPAN = 4.0  # the stall's `for`
LEASE = 2.0

BODY = f"""
[integrations.hook]
kind = "webhook"
url = "@URL@"
allow_http = true
allow_private = true

[[automations]]
name = "stalled"
scope = "{SCOPE}"
event = {{ kind = "RUN_STALLED", metric = "loss", for = "{SPAN:.0f}s" }}
action = {{ integration = "hook" }}
"""


@pytest.fixture
async def nodes(request: Any, short_dir: Path, receiver: Receiver
                ) -> AsyncIterator[list[Node]]:
    """One NATS server and two runhook nodes (debug logs: each execution made is
    logged), checkpointing as the test's parameter says."""
    nats = NatsCluster(short_dir / "nats", 1)
    await nats.start()
    made = []
    for name in ("a", "b"):
        config = node_config(short_dir, name, nats.urls, BODY.replace("@URL@", receiver.url),
                             partitions=PARTITIONS, lease=f"{LEASE:.0f}s",
                             checkpoint=request.param)
        made.append(Node(name, config, str(short_dir / f"{name}.sock"),
                         short_dir / f"{name}.log"))
    try:
        await asyncio.gather(*(start_node(n, "debug") for n in made))
        await balanced(made)
        yield made
    finally:
        for node in made:
            if node.process is not None and node.process.returncode is None:
                await stop_node(node)
        await nats.stop()


def checkpoints(every: str) -> pytest.MarkDecorator:
    return pytest.mark.parametrize("nodes", [every], indirect=True, ids=[f"checkpoint-{every}"])


async def owner_and_other(nodes: list[Node]) -> tuple[Node, Node]:
    first, second = nodes
    return (first, second) if PARTITION in (await status(first))["partitions"] \
        else (second, first)


async def send(node: Node, event: dict[str, Any]) -> None:
    async with AsyncClient(node.socket) as client:
        assert await client.request({"entity": "acme", "project": "p0", "run_id": "r1",
                                     **event}) == {"ok": True}


def made(text: str) -> list[str]:
    """The execution ids a node's debug log says it created."""
    return [line.split("execution ")[1].split(" ")[0] for line in text.splitlines()
            if " created: " in line]


def stalls(receiver: Receiver) -> list[str]:
    return [r.headers["webhook-id"] for r in receiver.requests
            if json.loads(r.body)["data"]["automation_name"] == "stalled"]


@checkpoints("1s")
async def test_a_stall_deadline_survives_a_takeover_and_fires_once(
        nodes: list[Node], receiver: Receiver) -> None:
    """A run logs `loss` once, then nothing (SPAN = 4 s). Its owner checkpoints the
    partition (the run in it) and is killed with -9 well before the deadline. The
    new owner restores the checkpoint and fires the stall once, at the run's last
    values + SPAN as one machine would: before the takeover was seen, no later than
    that + 2 s of slack for firing and delivery. Before, the new owner counted the
    span from its takeover (at least the checkpoint wait + the 2 s lease later, so
    7 s or more after the values)."""
    owner, other = await owner_and_other(nodes)
    loop = asyncio.get_running_loop()
    await send(other, {"type": "run.state", "state": "running"})
    await send(other, {"type": "run.metrics", "step": 1, "values": {"loss": 1.0}})
    valued = loop.time()
    # The owner wrote a checkpoint holding both events (stream sequences 1 and 2, the
    # only ones), so the new owner restores the run's values rather than replays them.
    await eventually(lambda: asyncio.to_thread(owner.log.read_text),
                     lambda text: f"partition p{PARTITION}: checkpoint at 2 " in text,
                     timeout=15)
    await stop_node(owner, signal.SIGKILL)
    first = await receiver.next(timeout=30)
    assert json.loads(first.body)["data"]["automation_name"] == "stalled"
    assert first.at - valued < SPAN + 2.0, first.at - valued
    # Once: the new owner's history holds one execution, the one delivered.
    rows = await eventually(lambda: history(other.socket),
                            lambda rows: rows and rows[0]["state"] == "FINISHED")
    assert [r["id"] for r in rows] == [first.headers["webhook-id"]]
    assert stalls(receiver) == [first.headers["webhook-id"]]


@checkpoints("30m")
async def test_a_stall_fired_after_the_last_checkpoint_is_fired_again_under_its_id(
        nodes: list[Node], receiver: Receiver) -> None:
    """The owner fires and delivers a stall and is killed with -9 before any
    checkpoint holds it (none is written in 30 min). The new owner replays the run's
    events, finds the same deadline passed and fires it again: under the same id,
    derived from the deadline, so JetStream drops the copy and the history holds
    one execution. Before, the id was named by the firing's time: a second
    execution, a second webhook."""
    owner, other = await owner_and_other(nodes)
    await send(other, {"type": "run.state", "state": "running"})
    await send(other, {"type": "run.metrics", "step": 1, "values": {"loss": 1.0}})
    first = await receiver.next(timeout=30)
    stall_id = first.headers["webhook-id"]
    await stop_node(owner, signal.SIGKILL)
    # The new owner's own firing of the same stall, awaited in its log.
    text = await eventually(lambda: asyncio.to_thread(other.log.read_text),
                            lambda text: bool(made(text)), timeout=30)
    assert made(text) == [stall_id]
    rows = await eventually(lambda: history(other.socket), lambda rows: len(rows) >= 1)
    assert [r["id"] for r in rows] == [stall_id]
    assert stalls(receiver) == [stall_id]


def test_checkpoint_formats_read_and_refused() -> None:
    """Format 1 (before the deadlines' times) is still read, its new owner counting
    from the takeover; format 2 round-trips its times; a newer format is refused,
    saying which formats this node reads. By hand: watched without a break (written
    at 100, this node up since 50) -> the old owner's since (10); written before this
    node came up (at 40) -> since this node came up (50); format 1 -> now (200)."""
    old = decode(msgspec.msgpack.encode([1, 7, "a", {}]))
    assert (old.format, old.seq, old.since, old.times) == (1, 7, None, {})
    assert watched_since(old, 50.0, 200.0) == 200.0
    times = {SCOPE: Times({"r1": {"loss": 12.5}}, {"sweep": 11.0})}
    new = decode(msgspec.msgpack.encode(Snapshot(2, 7, "a", {}, 10.0, 100.0, times)))
    assert new.times == times
    assert watched_since(new, 50.0, 200.0) == 10.0
    assert watched_since(Snapshot(2, 7, "a", {}, 10.0, 40.0), 50.0, 200.0) == 50.0
    assert watched_since(None, 50.0, 200.0) == 50.0
    with pytest.raises(ValueError, match=r"checkpoint format 3 is not one this node reads \(1, 2\)"):
        decode(msgspec.msgpack.encode([3, 7, "a", {}]))
