"""A rolling configuration change on a real 3-node cluster (three nats-server
processes, three runhook daemons): an event answered ok reaches its partition whatever
the automations of the node that took it, its execution exists exactly once, and it is
sent whatever the automations of the node whose worker takes it."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import nats
import pytest
from conftest import Receiver, eventually
from nats_cluster import NatsCluster, node_config
from test_cluster import (  # one_node: a fixture, for pytest to find here
    BODY,
    PARTITIONS,
    Node,
    balanced,
    history,
    one_node,  # noqa: F401
    start_node,
    status,
    stop_node,
)

from runhook.client import AsyncClient
from runhook.cluster.bus import EXECUTIONS, MSG_ID, encode, partition_of
from runhook.cluster.deliver import CONSUMER
from runhook.core.executions import ExecutionRow, new_id

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


async def test_an_execution_whose_automation_the_delivering_node_lacks_waits_for_one_with_it(
        one_node: tuple[NatsCluster, Node], receiver: Receiver) -> None:  # noqa: F811
    """Every node's workers take executions from the one queue, whichever node made
    them. An execution made by an owner whose file has an automation this node's file
    lacks (a rolling change: the owner reloaded first) goes back to the queue unsent,
    and is sent once a node that has the automation takes it: here this node, after
    its reload. Before, the first worker without the automation judged it FAILED ("no
    longer configured") and it was never sent: in the test above, x1 whenever node a
    or b took it before reloading (4 of 6 runs)."""
    cluster, node = one_node
    now = time.time()
    execution_id = new_id(now)
    context = {"event_type": "CREATE_ARTIFACT", "event_author": "", "entity_name": "acme",
               "automation_name": "model-new", "execution_id": execution_id,
               "event_time": "2026-01-01T00:00:00Z", "project_name": "late",
               "artifact_collection_name": "m", "artifact_version": "acme/late/m:v1",
               "artifact_version_index": 1, "artifact_version_string": "acme/late/m:v1"}
    row = ExecutionRow(execution_id, "model-new", "project:acme/late", "CREATE_ARTIFACT",
                       "artifact.created", "late1", "webhook", "hook", "PENDING", None,
                       json.dumps(context), None, now, now, None)
    nc = await nats.connect(cluster.urls)
    try:
        js = nc.jetstream()
        await js.publish("runhook.ex", encode(row), headers={MSG_ID: execution_id})
        # Taken, and back on the queue (delivered again by JetStream), not judged: the
        # only message, so a second delivery is this one's.
        await eventually(lambda: js.consumer_info(EXECUTIONS, CONSUMER),
                         lambda info: (info.delivered.consumer_seq or 0) >= 2, timeout=30)
    finally:
        await nc.close()
    assert not receiver.requests
    node.config.write_text(node.config.read_text() + ADDED.format(project="late"))
    reloaded = await request(node, {"type": "command.reload"})
    assert reloaded["ok"], reloaded
    delivered = await receiver.next(timeout=30)
    assert delivered.headers["webhook-id"] == execution_id
    rows = await eventually(lambda: history(node.socket),
                            lambda rows: any(r["id"] == execution_id for r in rows))
    assert [(r["id"], r["state"]) for r in rows] == [(execution_id, "FINISHED")]
