"""Cluster mode's owner side on real nats-server processes (docs/cluster.md): an owner
paused past its lease acts on nothing and its executions are fenced, a timer's
execution whose publish failed is published again without another event, a timer's
firing is checkpointed (no second alert once JetStream's duplicate window passed),
and a partition that keeps failing on one node is handed to another."""

from __future__ import annotations

import json
import signal
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import msgspec
import nats as nats_client
import pytest
from conftest import Receiver, eventually
from nats.js.api import DiscardPolicy, RetentionPolicy, StreamConfig
from nats_cluster import NatsCluster, node_config
from test_cluster import Node, balanced, history, start_node, status, stop_node

from runhook.client import AsyncClient
from runhook.cluster.bus import EXECUTION_SUBJECT, EXECUTIONS, lease_key, partition_of

PARTITIONS = 8
SCOPE = "project:acme/p0"
PARTITION = partition_of(SCOPE, PARTITIONS)

HOOK = """
[integrations.hook]
kind = "webhook"
url = "@URL@"
allow_http = true
allow_private = true
"""


def crash_body(url: str, timeout: str) -> str:
    return HOOK.replace("@URL@", url) + f"""
[[automations]]
name = "crashed"
scope = "{SCOPE}"
event = {{ kind = "RUN_STATE", states = ["crashed"], heartbeat_timeout = "{timeout}" }}
action = {{ integration = "hook" }}

[[automations]]
name = "model"
scope = "{SCOPE}"
event = {{ kind = "CREATE_ARTIFACT" }}
action = {{ integration = "hook" }}
"""


async def send(node: Node, event: dict[str, Any]) -> None:
    async with AsyncClient(node.socket) as client:
        assert await client.request({"entity": "acme", "project": "p0", **event}) \
            == {"ok": True}


async def log_of(node: Node) -> str:
    return await anyio.to_thread.run_sync(node.log.read_text)


@pytest.fixture
async def nodes(request: Any, short_dir: Path, receiver: Receiver
                ) -> AsyncIterator[tuple[NatsCluster, list[Node]]]:
    """NATS servers (3, or as the test's `setup` says) and two runhook nodes logging
    at debug level (each execution made is logged, so it can be awaited)."""
    options: dict[str, Any] = dict(getattr(request, "param", {}))
    nats = NatsCluster(short_dir / "nats", options.pop("servers", 3))
    await nats.start()
    prepare = options.pop("prepare", None)
    if prepare is not None:
        await prepare(nats)
    timeout = options.pop("timeout", "5s")
    made = []
    for name in ("a", "b"):
        config = node_config(short_dir, name, nats.urls, crash_body(receiver.url, timeout),
                             partitions=PARTITIONS, client_heartbeat="1s", **options)
        made.append(Node(name, config, str(short_dir / f"{name}.sock"),
                         short_dir / f"{name}.log"))
    try:
        for node in made:
            await start_node(node, "debug")
        await balanced(made)
        yield nats, made
    finally:
        for node in made:
            if node.process is not None and node.process.returncode is None:
                node.process.send_signal(signal.SIGCONT)
                try:
                    await stop_node(node)
                except TimeoutError:
                    node.process.kill()
                    await node.process.wait()
        await nats.stop()


def setup(**options: Any) -> pytest.MarkDecorator:
    """The `nodes` fixture's options for one test: servers, timeout (the runs'
    heartbeat timeout), prepare (called with the NATS cluster before any node
    starts), and node_config's own."""
    return pytest.mark.parametrize("nodes", [options], indirect=True, ids=["nodes"])


async def owners(nodes: list[Node]) -> list[Node]:
    """The nodes that say they own SCOPE's partition."""
    found = []
    for node in nodes:
        if node.process is not None and node.process.returncode is None \
                and PARTITION in (await status(node))["partitions"]:
            found.append(node)
    return found


async def owner_and_other(nodes: list[Node]) -> tuple[Node, Node]:
    (owner,) = await owners(nodes)
    return owner, next(n for n in nodes if n is not owner)


def crashes(receiver: Receiver) -> list[tuple[str, str]]:
    """(run id, webhook-id) of every crash webhook received, in arrival order."""
    out = []
    for request in receiver.requests:
        data = json.loads(request.body)["data"]
        if data.get("run_status") == "crashed":
            out.append((data["run_id"], request.headers["webhook-id"]))
    return out


async def test_an_owner_paused_past_its_lease_declares_no_crash_and_its_successor_is_exact(
        nodes: tuple[NatsCluster, list[Node]], receiver: Receiver) -> None:
    """Five runs beat every 0.5 s through the other node while the owner of their
    partition is stopped (SIGSTOP) for longer than the lease (2 s) and than their
    heartbeat timeout (5 s), so that on SIGCONT every one of its deadlines has
    passed. It must fire none of them (it no longer owns them, and has not read the
    beats); the new owner, which read every beat, declares each run crashed exactly
    once, 5 s after its last beat, when the beats stop. By hand: 5 crashes, one per
    run, all made by the new owner, none by the paused one (before the change it
    made 5 on waking, and they were delivered)."""
    _, both = nodes
    owner, other = await owner_and_other(both)
    runs = [f"r{k}" for k in range(5)]
    for run in runs:
        await send(other, {"type": "run.state", "run_id": run, "state": "running"})
    beating = anyio.Event()

    async def beat() -> None:
        while not beating.is_set():
            for run in runs:
                await send(other, {"type": "run.heartbeat", "run_id": run})
            with anyio.move_on_after(0.5):  # the runs' pace, not a wait for anything
                await beating.wait()

    async with anyio.create_task_group() as tg:
        tg.start_soon(beat)
        assert owner.process is not None
        owner.process.send_signal(signal.SIGSTOP)
        stopped_at = time.monotonic()
        # The other node takes the partition once the lease ran out...
        await eventually(lambda: owners([other]), lambda found: found == [other], timeout=30)
        # ...and the paused owner stays stopped past the runs' heartbeat timeout: the
        # scenario (its deadlines must all have passed when it wakes), not a wait.
        await anyio.sleep(max(0.0, stopped_at + 6.5 - time.monotonic()))
        owner.process.send_signal(signal.SIGCONT)
        # It wakes, finds the lease gone, and lets the partition go. (It is then
        # stopped: as the partition's preferred node it would take it back, and
        # the crashes below are to come from the node that read every beat.)
        await eventually(lambda: log_of(owner), lambda text: "went to another node" in text
                         or f"lost partition {PARTITION}" in text, timeout=30)
        assert await stop_node(owner) == 0
        await eventually(lambda: owners([other]), lambda found: found == [other], timeout=30)
        beating.set()
    # The beats stopped: the new owner declares each run crashed, once.
    for _ in runs:
        await receiver.next(timeout=30)
    rows = await eventually(lambda: history(other.socket),
                            lambda rows: len(rows) >= len(runs)
                            and all(r["state"] == "FINISHED" for r in rows), timeout=30)
    assert sorted(run for run, _ in crashes(receiver)) == runs
    assert len({webhook for _, webhook in crashes(receiver)}) == len(runs)
    assert len(rows) == len(runs)  # no other execution exists, delivered or not
    assert sorted(r["id"] for r in rows) == sorted(w for _, w in crashes(receiver))
    assert " created: " not in await log_of(owner)  # the paused owner made none


async def _work_queue_refuses(cluster: NatsCluster, refuse: bool) -> None:
    """The executions stream takes no message (max_bytes 1, new ones discarded), or
    takes them again: a publish to it fails as when its leader is away."""
    nc = await nats_client.connect(servers=cluster.urls)
    try:
        js = nc.jetstream()
        config = (await js.stream_info(EXECUTIONS)).config
        config.max_bytes = 1 if refuse else -1
        config.discard = DiscardPolicy.NEW if refuse else DiscardPolicy.OLD
        await js.update_stream(config)
    finally:
        await nc.close()


@setup(servers=1, timeout="2s")
async def test_a_timer_execution_whose_publish_failed_is_delivered_without_another_event(
        nodes: tuple[NatsCluster, list[Node]], receiver: Receiver) -> None:
    """The work queue refuses every message as a run's crash timer fires; once it
    takes them again, the crash is delivered, with no event sent after the run's
    first: its publish is tried again, not left for an unrelated event to redo."""
    cluster, both = nodes
    owner, other = await owner_and_other(both)
    await send(other, {"type": "run.state", "run_id": "r1", "state": "running"})
    await _work_queue_refuses(cluster, True)
    text = await eventually(lambda: log_of(owner), lambda text: " created: " in text,
                            timeout=30)
    (line,) = [t for t in text.splitlines() if " created: " in t]
    crash_id = line.split("execution ")[1].split(" ")[0]
    # The history has it (the crash was committed and recorded); the queue refused it.
    await eventually(lambda: history(owner.socket), lambda rows: [r["id"] for r in rows]
                     == [crash_id], timeout=30)
    assert receiver.requests == []
    await _work_queue_refuses(cluster, False)
    delivered = await receiver.next(timeout=30)
    assert delivered.headers["webhook-id"] == crash_id
    assert crashes(receiver) == [("r1", crash_id)]


async def _short_duplicate_window(cluster: NatsCluster) -> None:
    """The executions stream made before any node, as runhook makes it but with a
    duplicate window of 1 s instead of 1 h (a node leaves an existing stream as it is)."""
    nc = await nats_client.connect(servers=cluster.urls)
    try:
        await nc.jetstream().add_stream(StreamConfig(
            name=EXECUTIONS, subjects=[EXECUTION_SUBJECT], num_replicas=1,
            retention=RetentionPolicy.WORK_QUEUE, duplicate_window=1.0))
    finally:
        await nc.close()


async def _checkpoint(cluster: NatsCluster) -> bytes:
    """The partition's current checkpoint, as stored (msgpack: its strings readable)."""
    nc = await nats_client.connect(servers=cluster.urls)
    try:
        js = nc.jetstream()
        entry = await (await js.key_value("RUNHOOK_POSITIONS")).get(lease_key(PARTITION))
        _, name = msgspec.msgpack.decode(entry.value or b"")
        if not name:
            return b""
        return (await (await js.object_store("RUNHOOK_CHECKPOINTS")).get(name)).data or b""
    finally:
        await nc.close()


@setup(servers=1, timeout="2s", checkpoint="1s", prepare=_short_duplicate_window)
async def test_a_crash_alert_is_checkpointed_and_not_sent_again_after_the_duplicate_window(
        nodes: tuple[NatsCluster, list[Node]], receiver: Receiver) -> None:
    """A run goes silent and its owner delivers the crash; the firing makes a
    checkpoint due, so the partition's checkpoint moves after it though no event
    came. The owner is killed with -9 after JetStream's duplicate window (1 s here)
    passed: the next owner restores the run as crashed and fires nothing, where an
    old checkpoint would make it fire the same id again and JetStream, past the
    window, take it: one delivery of the id, not two. A second run, silent after the
    takeover, shows the new owner's timers ran (its crash is made after the first
    run's would have been, by the same scope)."""
    cluster, both = nodes
    owner, other = await owner_and_other(both)
    await send(other, {"type": "run.state", "run_id": "r1", "state": "running"})
    first = await receiver.next(timeout=30)
    crash_id = first.headers["webhook-id"]
    assert crashes(receiver) == [("r1", crash_id)]
    # The checkpoint comes to hold the run as crashed, with no event after its first.
    await eventually(lambda: _checkpoint(cluster), lambda data: b"crashed" in data,
                     timeout=15)
    await anyio.sleep(1.5)  # JetStream's duplicate window (1 s) passes: the scenario
    await stop_node(owner, signal.SIGKILL)
    await eventually(lambda: owners([other]), lambda found: found == [other], timeout=30)
    await send(other, {"type": "run.state", "run_id": "r2", "state": "running"})
    second = await receiver.next(timeout=30)
    text = await log_of(other)
    made = [t.split("execution ")[1].split(" ")[0] for t in text.splitlines()
            if " created: " in t]
    assert crash_id not in made
    assert [run for run, _ in crashes(receiver)] == ["r1", "r2"]
    assert second.headers["webhook-id"] in made
    assert [w for _, w in crashes(receiver)].count(crash_id) == 1


@setup(servers=1)
async def test_a_partition_failing_again_and_again_on_one_node_moves_to_another(
        nodes: tuple[NatsCluster, list[Node]], receiver: Receiver, short_dir: Path) -> None:
    """The owner's SQLite refuses the partition's executions (a trigger: its disk, as
    far as the partition can tell). It starts the partition again from its
    checkpoint after 1, 2 and 4 s; at the fourth failure in a row it declines the
    partition and hands it over; the other node evaluates the event and delivers it.
    Before, the owner kept the lease (renewed) and retried every 30 s at last, forever."""
    _, both = nodes
    owner, other = await owner_and_other(both)

    def refuse() -> None:
        db = sqlite3.connect(short_dir / f"{owner.name}.db")
        try:
            db.execute(f"""CREATE TRIGGER refuse BEFORE INSERT ON executions
                           WHEN NEW.scope = '{SCOPE}'
                           BEGIN SELECT RAISE(ABORT, 'the disk refuses'); END""")
            db.commit()
        finally:
            db.close()

    await anyio.to_thread.run_sync(refuse)
    await send(other, {"type": "artifact.created", "collection": "m", "version": 1,
                       "id": "model-1"})
    delivered = await receiver.next(timeout=60)
    assert json.loads(delivered.body)["data"]["automation_name"] == "model"
    assert await owners(both) == [other]
    text = await log_of(owner)
    assert f"partition {PARTITION} failed 4 times in a row here" in text
    rows = await eventually(lambda: history(other.socket),
                            lambda rows: len(rows) == 1 and rows[0]["state"] == "FINISHED")
    assert rows[0]["event_id"] == "model-1"
