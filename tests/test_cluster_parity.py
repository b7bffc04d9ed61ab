"""Cluster mode at parity with one machine for state and commands (docs/cluster.md):
silences and an integration's switch are the cluster's, and enable, redeliver and
test are answered by any node. Two runhook nodes over one real nats-server."""

from __future__ import annotations

import contextlib
import json
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from conftest import Receiver, eventually
from nats_cluster import NatsCluster, node_config
from test_cluster import BODY, PARTITIONS, Node, balanced, history, start_node, stop_node

from runhook.client import AsyncClient
from runhook.cluster.bus import partition_of

HELD = "is not sent: integration hook is disabled"


async def ask(node: Node, request: dict[str, Any]) -> dict[str, Any]:
    async with AsyncClient(node.socket) as client:
        return dict(await client.request(request))


async def hook(node: Node) -> dict[str, Any]:
    """The node's status of integration `hook`."""
    (found,) = (await ask(node, {"type": "query.status"}))["status"]["integrations"]
    return dict(found)


async def execution(node: Node, execution_id: str) -> dict[str, Any]:
    return await ask(node, {"type": "query.execution", "id": execution_id})


def artifact(project: str, version: int) -> dict[str, Any]:
    return {"type": "artifact.created", "entity": "acme", "project": project,
            "collection": "m", "version": version}


@contextlib.asynccontextmanager
async def over_one_nats(short_dir: Path, receiver: Receiver, names: list[str],
                        body: str = BODY) -> AsyncIterator[list[Node]]:
    """Runhook nodes `names` over one NATS server, each owning partitions (all of
    them owned), `body` their configuration sending to `receiver`."""
    nats = NatsCluster(short_dir / "nats", 1)
    await nats.start()
    nodes = []
    for name in names:
        config = node_config(short_dir, name, nats.urls, body.replace("@URL@", receiver.url),
                             partitions=PARTITIONS)
        nodes.append(Node(name, config, str(short_dir / f"{name}.sock"),
                          short_dir / f"{name}.log"))
    try:
        async with anyio.create_task_group() as tg:
            for node in nodes:
                tg.start_soon(start_node, node)
        await balanced(nodes)
        yield nodes
    finally:
        for node in nodes:
            if node.process is not None and node.process.returncode is None:
                await stop_node(node)
        await nats.stop()


@pytest.fixture
async def pair(short_dir: Path, receiver: Receiver) -> AsyncIterator[list[Node]]:
    """Nodes a and b over one NATS server, every partition owned by one of them."""
    async with over_one_nats(short_dir, receiver, ["a", "b"]) as nodes:
        yield nodes


async def owned_by(node: Node) -> str:
    """A project whose scope's partition `node` owns (its events are evaluated there)."""
    partitions = (await ask(node, {"type": "query.status"}))["status"]["cluster"]["partitions"]
    return next(f"p{k}" for k in range(6)
                if partition_of(f"project:acme/p{k}", PARTITIONS) in partitions)


async def test_a_silence_added_on_one_node_mutes_a_firing_evaluated_on_another(
        pair: list[Node], receiver: Receiver) -> None:
    """Added on a, it is listed on b and mutes b's firing (SKIPPED, with the silence's
    id and comment); expired on a, b's next firing is sent."""
    a, b = pair
    project = await owned_by(b)
    added = await ask(a, {"type": "command.silence_add", "automation": f"model-{project}",
                          "duration": "1h", "comment": "model registry migration"})
    assert added["ok"], added
    silence_id = added["silence"]["id"]

    async def listed() -> list[dict[str, Any]]:
        return list((await ask(b, {"type": "command.silence_list"}))["silences"])
    await eventually(listed, lambda found: [(s["id"], s["active"]) for s in found]
                     == [(silence_id, True)])

    assert await ask(a, artifact(project, 1)) == {"ok": True}
    rows = await eventually(lambda: history(b.socket),
                            lambda rows: [r["state"] for r in rows] == ["SKIPPED"])
    assert rows[0]["automation"] == f"model-{project}"
    assert rows[0]["reason"] == f"silenced by {silence_id}: model registry migration"

    expired = await ask(a, {"type": "command.silence_expire", "id": silence_id})
    assert expired["ok"] and expired["silence"]["active"] is False, expired
    await eventually(listed, lambda found: [(s["id"], s["active"]) for s in found]
                     == [(silence_id, False)])
    assert await ask(a, artifact(project, 2)) == {"ok": True}
    sent = await receiver.next(timeout=30)
    assert json.loads(sent.body)["data"]["automation_name"] == f"model-{project}"
    assert len(receiver.requests) == 1  # the muted firing was never sent


async def test_a_410_on_one_node_holds_every_node_until_enabled_on_another(
        pair: list[Node], receiver: Receiver) -> None:
    """A 410 seen by one node disables `hook` on both (status says so on each, and
    after that node restarts); later executions stay PENDING on both nodes, unsent;
    `runhook enable hook` on the other node sends them, each once."""
    receiver.responses = [(410, "gone", {})]
    assert await ask(pair[0], artifact("p0", 1)) == {"ok": True}
    gone = (await receiver.next(timeout=30)).headers["webhook-id"]
    reason = f"HTTP 410 (execution {gone}); `runhook enable hook` resumes"
    for node in pair:
        await eventually(lambda node=node: hook(node), lambda h: h["disabled"] == reason)
    saw, other = pair if (await hook(pair[0]))["last_error"] == "HTTP 410" else pair[::-1]

    assert await ask(other, artifact("p1", 1)) == {"ok": True}
    assert await ask(saw, artifact("p2", 1)) == {"ok": True}

    def held_ids() -> list[str]:
        lines = [line for node in pair for line in node.log.read_text().splitlines()
                 if HELD in line]
        return sorted(line.split("execution ")[1].split(" ")[0] for line in lines)
    held = await eventually(lambda: anyio.to_thread.run_sync(held_ids),
                            lambda ids: len(ids) == 2, timeout=30)
    for node in pair:
        for execution_id in held:
            found = await eventually(lambda node=node, e=execution_id: execution(node, e),
                                     lambda answer: "execution" in answer)
            assert found["execution"]["state"] == "PENDING"
            assert found["execution"]["attempts"] == 0
    assert len(receiver.requests) == 1  # the 410's alone

    await stop_node(saw)  # the switch is the cluster's, not the memory of a node
    assert saw.process is not None and saw.process.returncode == 0
    await start_node(saw)
    assert (await hook(saw))["disabled"] == reason

    enabled = await ask(other, {"type": "command.enable", "integration": "hook"})
    assert enabled == {"ok": True, "integration": "hook", "was_disabled": reason}
    resent = [await receiver.next(timeout=30) for _ in held]
    assert sorted(r.headers["webhook-id"] for r in resent) == held
    for node in pair:
        await eventually(lambda node=node: hook(node), lambda h: h["disabled"] is None)
        for execution_id in held:
            done = await eventually(lambda node=node, e=execution_id: execution(node, e),
                                    lambda answer: answer["execution"]["state"] == "FINISHED")
            assert [(x["number"], x["status"]) for x in done["attempts"]] == [(1, 200)]
    assert len(receiver.requests) == 3


async def test_redeliver_on_a_node_that_did_not_deliver_sends_again(
        pair: list[Node], receiver: Receiver) -> None:
    """The execution goes back on the executions queue under its own id: the receiver
    sees the same webhook-id again, and the history (on both nodes) two attempts."""
    assert await ask(pair[0], artifact("p0", 1)) == {"ok": True}
    first = await receiver.next(timeout=30)
    execution_id = first.headers["webhook-id"]
    counts = [(await eventually(lambda n=n: hook(n), lambda h: h["in_flight"] == 0))["sent"]
              for n in pair]
    assert sorted(counts) == [0, 1]
    other = pair[counts.index(0)]
    await eventually(lambda: execution(other, execution_id),
                     lambda answer: answer.get("execution", {}).get("state") == "FINISHED")

    answer = await ask(other, {"type": "command.redeliver", "id": execution_id})
    assert answer == {"ok": True, "redelivered": [execution_id], "left_out": {}, "notes": {}}
    again = await receiver.next(timeout=30)
    assert again.headers["webhook-id"] == execution_id
    assert again.body == first.body
    for node in pair:
        done = await eventually(lambda node=node: execution(node, execution_id),
                                lambda a: a["execution"]["attempts"] == 2
                                and a["execution"]["state"] == "FINISHED")
        assert [(x["number"], x["status"]) for x in done["attempts"]] == [(1, 200), (2, 200)]
    assert len(receiver.requests) == 2


async def test_test_on_a_cluster_node_sends_and_every_node_records_it(
        pair: list[Node], receiver: Receiver) -> None:
    """Sent from the node asked (a probe of its reach), recorded in both histories."""
    answer = await ask(pair[0], {"type": "command.test", "integration": "hook"})
    assert answer["ok"], answer
    test = answer["test"]
    assert (test["status"], test["error"], test["response"]) == (200, None, "ok")
    (sent,) = receiver.requests
    assert sent.headers["webhook-id"] == test["execution_id"]
    for node in pair:
        found = await eventually(lambda node=node: execution(node, test["execution_id"]),
                                 lambda a: a.get("execution", {}).get("state") == "FINISHED")
        assert found["execution"]["automation"] == "(test)"
        assert [(x["number"], x["status"]) for x in found["attempts"]] == [(1, 200)]


async def test_a_node_restarted_with_sigkill_keeps_the_silences(
        pair: list[Node], receiver: Receiver) -> None:
    """Silences live in the cluster's bucket, not in a node's memory or database."""
    a, b = pair
    added = await ask(a, {"type": "command.silence_add", "all": True, "duration": "1h",
                          "comment": "maintenance"})
    assert added["ok"], added
    await stop_node(b, signal.SIGKILL)
    await start_node(b)
    listed = await ask(b, {"type": "command.silence_list"})
    assert [s["id"] for s in listed["silences"]] == [added["silence"]["id"]]
