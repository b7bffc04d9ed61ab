"""Deadlines do not depend on which node's wall clock stamped an event: two real
cluster nodes over real NATS, one of them 10 minutes fast (RUNHOOK_TEST_CLOCK_OFFSET,
a test-only offset of its wall clock)."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

from conftest import Receiver
from nats_cluster import NatsCluster, node_config
from test_cluster import PARTITIONS, Node, balanced, start_node, status, stop_node

from runhook.client import AsyncClient
from runhook.cluster.bus import partition_of

BODY = """
[integrations.hook]
kind = "webhook"
url = "@URL@"
allow_http = true
allow_private = true

[[automations]]
name = "crashed"
scope = "entity:acme"
event = { kind = "RUN_STATE", states = ["crashed"], heartbeat_timeout = "2s" }
action = { integration = "hook" }
"""
FAST = 600.0


async def beat(node: Node, project: str, beats: int) -> None:
    """A run that says it runs, then beats every 0.5 s, through `node`."""
    async with AsyncClient(node.socket) as client:
        line = {"type": "run.state", "entity": "acme", "project": project, "run_id": "r1",
                "state": "running"}
        assert await client.request(line) == {"ok": True}
        for _ in range(beats):
            await asyncio.sleep(0.5)  # the run's pace, not a wait for anything
            assert await client.request({"type": "run.heartbeat", "entity": "acme",
                                         "project": project, "run_id": "r1"}) == {"ok": True}


async def test_a_node_ten_minutes_fast_neither_crashes_runs_nor_delays_crashes(
        short_dir: Path, receiver: Receiver) -> None:
    """Node `fast` runs 10 minutes ahead. As owner, it must not declare crashed a run
    that beats every 0.5 s (timeout 2 s) through the other node: nothing is sent
    while it beats, and its crash comes once it stops. As ingress, its times must not
    put the crash of a run it took the beats of 10 minutes late: the crash comes. Before, the fast owner crashed the beating run at
    once, and the slow owner waited 10 minutes past the fast ingress's stamps."""
    nats = NatsCluster(short_dir / "nats", 1)
    await nats.start()
    nodes = []
    for name in ("fast", "right"):
        config = node_config(short_dir, name, nats.urls, BODY.replace("@URL@", receiver.url),
                             partitions=PARTITIONS, client_heartbeat="1s")
        nodes.append(Node(name, config, str(short_dir / f"{name}.sock"),
                          short_dir / f"{name}.log"))
    fast, right = nodes
    try:
        os.environ["RUNHOOK_TEST_CLOCK_OFFSET"] = str(FAST)  # start_node passes os.environ
        try:
            await start_node(fast)
        finally:
            del os.environ["RUNHOOK_TEST_CLOCK_OFFSET"]
        await start_node(right)
        await balanced(nodes)
        owned = set((await status(fast))["partitions"])
        on_fast = next(f"f{k}" for k in range(1000)
                       if partition_of(f"project:acme/f{k}", PARTITIONS) in owned)
        on_right = next(f"r{k}" for k in range(1000)
                        if partition_of(f"project:acme/r{k}", PARTITIONS) not in owned)

        await beat(right, on_fast, 8)  # 4 s of beats, twice the timeout
        assert receiver.requests == []  # no run crashed while it beat
        crash = json.loads((await receiver.next(timeout=30)).body)
        assert crash["data"]["run_status"] == "crashed"

        await beat(fast, on_right, 2)
        second = await receiver.next(timeout=30)
        data = json.loads(second.body)["data"]
        assert data["run_status"] == "crashed"
        assert len(receiver.requests) == 2
    finally:
        for node in nodes:
            if node.process is not None and node.process.returncode is None:
                assert await stop_node(node) == 0
        await nats.stop()
