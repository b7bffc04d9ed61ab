"""Cluster mode tells the truth (issue 30): a foreign history record is refused alone
and every node's history moves on; a lost NATS server never has a sent webhook sent
again; /readyz and status say when NATS is unreachable; an attempt number counts
attempts made, not JetStream's deliveries. Real nats-server processes on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import anyio
import msgspec
import nats as nats_client
import pytest
from conftest import Receiver, eventually
from nats_cluster import NatsCluster, free_port, node_config
from test_cluster import (
    BODY,
    PARTITIONS,
    Node,
    Sender,
    balanced,
    history,
    start_node,
    stop_node,
)

from runhook.client import AsyncClient
from runhook.cluster.leases import Leases
from runhook.cluster.records import Foreign, statements


async def full_status(node: Node) -> dict[str, Any]:
    async with AsyncClient(node.socket) as client:
        answer = await client.request({"type": "query.status"})
    assert answer["ok"], answer
    return dict(answer["status"])


async def execution(node: Node, execution_id: str) -> dict[str, Any]:
    async with AsyncClient(node.socket) as client:
        return await client.request({"type": "query.execution", "id": execution_id})


async def stop_all(nodes: list[Node], nats: NatsCluster) -> None:
    for node in nodes:
        if node.process is not None and node.process.returncode is None:
            try:
                await stop_node(node)
            except TimeoutError:
                node.process.kill()
                await node.process.wait()
    await nats.stop()


@contextlib.asynccontextmanager
async def running(short_dir: Path, receiver: Receiver, names: tuple[str, ...], servers: int = 1,
                  body: str = BODY, http: str = "") -> AsyncIterator[tuple[NatsCluster,
                                                                          list[Node]]]:
    """`servers` NATS servers and a node of each name over them, each owning partitions."""
    nats = NatsCluster(short_dir / "nats", servers)
    await nats.start()
    nodes = [Node(name, node_config(short_dir, name, nats.urls,
                                    body.replace("@URL@", receiver.url),
                                    partitions=PARTITIONS, http=http),
                  str(short_dir / f"{name}.sock"), short_dir / f"{name}.log")
             for name in names]
    try:
        await asyncio.gather(*(start_node(n) for n in nodes))
        await balanced(nodes)
        yield nats, nodes
    finally:
        await stop_all(nodes, nats)


def created_row(execution_id: str, now: float) -> list[Any]:
    """An executions row as runhook publishes it (a FINISHED one: nothing to deliver)."""
    return [execution_id, "model-p0", "project:acme/p0", "CREATE_ARTIFACT",
            "artifact.created", None, "webhook", "hook", "FINISHED", None,
            json.dumps({"event_type": "CREATE_ARTIFACT"}), None, now, now, None]


GOOD = created_row("ex_1", 1764300000.0)


def _with(index: int, value: Any) -> list[Any]:
    row = list(GOOD)
    row[index] = value
    return row


@pytest.mark.parametrize(("record", "kind"), [
    (["created", [_with(13, float("nan"))]], "created"),  # updated_at NaN: NULL in SQLite
    (["created", [_with(12, float("inf"))]], "created"),
    (["created", [_with(8, "BOGUS")]], "created"),  # a state the table refuses
    (["created", [_with(10, "not json")]], "created"),  # the console reads it as JSON
    (["created", [_with(0, None)]], "created"),  # the id is NOT NULL
    (["created", 5], "created"),
    (["created", [[*GOOD, 7]]], "created"),  # a digest id that is not one
    (["attempt", ["ex_1", 0, 1.0, 2.0, 200, None, None],
      ["FINISHED", None, 1.0, None, 1, "ex_1"], GOOD], "attempt"),  # attempt number 0
    (["attempt", ["ex_1", 1, 1.0, float("nan"), 200, None, None],
      ["FINISHED", None, 1.0, None, 1, "ex_1"], GOOD], "attempt"),
    (["attempt", ["ex_1", 1, 1.0, 2.0, 200, None, None],
      ["GONE", None, 1.0, None, 1, "ex_1"], GOOD], "attempt"),
    (["deleted", "ex_1"], "unknown"),
    ([], "unknown"),
])
def test_a_history_record_is_checked_whole_before_sqlite(record: list[Any], kind: str) -> None:
    with pytest.raises(Foreign) as refused:
        statements(msgspec.msgpack.encode(record))
    assert refused.value.kind == kind
    assert len(statements(msgspec.msgpack.encode(["created", [GOOD, [*GOOD, "ex_d"]]]))) == 2
    assert len(statements(msgspec.msgpack.encode(
        ["attempt", ["ex_1", 1, 1.0, 2.0, 200, None, None],
         ["FINISHED", None, 1.0, None, 1, "ex_1"], GOOD]))) == 3


async def test_foreign_history_records_are_refused_alone_and_every_history_moves_on(
        short_dir: Path, receiver: Receiver) -> None:
    """Two hostile records among good ones on the history stream: one whose
    `updated_at` is NaN (SQLite would store NULL and fail NOT NULL, and the mirror
    retried it forever) and `["created", 5]` (a TypeError that left the batch
    unacknowledged). Each node's mirror refuses those two, applies every good one
    around them, and counts what it refused; later executions reach both histories."""
    async with running(short_dir, receiver, ("a", "b")) as (nats, nodes):
        now = time.time()
        good = [f"ex_good{i}" for i in range(6)]
        nan = created_row("ex_nan", now)
        nan[13] = float("nan")
        hostile = [msgspec.msgpack.encode(["created", [nan]]),
                   msgspec.msgpack.encode(["created", 5])]
        nc = await nats_client.connect(servers=nats.urls)
        try:
            js = nc.jetstream()
            for i, execution_id in enumerate(good):  # good, hostile, good, hostile, good...
                await js.publish("runhook.hist", msgspec.msgpack.encode(
                    ["created", [created_row(execution_id, now + i)]]))
                if i < len(hostile):
                    await js.publish("runhook.hist", hostile[i])
        finally:
            await nc.close()
        # A real execution after them, delivered and mirrored like any other.
        async with AsyncClient(nodes[0].socket) as client:
            assert await client.request({"type": "artifact.created", "entity": "acme",
                                         "project": "p0", "collection": "m",
                                         "version": 1}) == {"ok": True}
        real = (await receiver.next(timeout=30)).headers["webhook-id"]
        want = sorted([*good, real])
        for node in nodes:
            rows = await eventually(lambda node=node: history(node.socket),
                                    lambda rows: sorted(r["id"] for r in rows) == want
                                    and all(r["state"] == "FINISHED" for r in rows), timeout=30)
            assert "ex_nan" not in {r["id"] for r in rows}
            mirror = (await full_status(node))["cluster"]["mirror"]
            assert mirror["rejected"] == {"created": 2}
            assert mirror["failing"] is None and mirror["wedged"] is False
            log = await asyncio.to_thread(node.log.read_text)
            # Logged once for the kind (the second within the minute is counted).
            assert log.count("a history record is not one of ours") == 1, log
            assert "Traceback" not in log


async def test_losing_one_nats_server_of_three_sends_no_execution_twice(
        short_dir: Path, receiver: Receiver) -> None:
    """The history stream's leader is killed while executions are delivered: the
    attempts' records wait for a new leader, and a webhook sent is never sent again
    for that (before, every attempt whose record failed was redelivered and sent a
    second time). Every execution is delivered exactly once, none lost."""
    async with running(short_dir, receiver, ("a", "b"), servers=3) as (nats, nodes):
        runs = [[{"type": "artifact.created", "entity": "acme", "project": f"p{k}",
                  "collection": "m", "version": i, "id": f"a-{k}-{i}"} for i in range(150)]
                for k in range(4)]
        total = sum(len(r) for r in runs)
        acked, counter = asyncio.Event(), [0]
        senders = [Sender(events, [n.socket for n in nodes], k % 2, acked, counter)
                   for k, events in enumerate(runs)]
        tasks = [asyncio.create_task(s.run()) for s in senders]
        while len(receiver.requests) < total * 0.2:  # deliveries under way
            await receiver.next(timeout=30)
        nc = await nats_client.connect(servers=nats.urls)
        try:
            leader = (await nc.jetstream().stream_info("RUNHOOK_HISTORY")).cluster.leader
        finally:
            await nc.close()
        index = [n.name for n in nats.nodes].index(leader)
        await nats.kill(index)
        delivered_at_kill = len(receiver.requests)
        await asyncio.gather(*tasks)
        assert counter[0] == total
        rows = await eventually(lambda: history(nodes[0].socket),
                                lambda rows: len(rows) >= total
                                and all(r["state"] == "FINISHED" for r in rows), timeout=120)
        assert delivered_at_kill < total  # the kill landed mid-delivery
        ids = {r["id"] for r in rows}
        assert len(ids) == len(rows) == total
        sent = Counter(r.headers["webhook-id"] for r in receiver.requests)
        assert set(sent) == ids  # none lost, no stranger
        assert [i for i, n in sent.items() if n > 1] == []  # none twice


async def test_readyz_is_503_while_nats_is_unreachable_and_status_says_why(
        short_dir: Path, receiver: Receiver) -> None:
    """Every line is refused while NATS is away, so the node is not ready: /readyz
    says 503 (naming the `nats` check) and status says NATS is not connected, within
    seconds; once NATS is back, /readyz is 200 again."""
    http = f"127.0.0.1:{free_port()}"
    async with running(short_dir, receiver, ("solo",), http=http) as (nats, (node,)), \
            aiohttp.ClientSession() as session:
        async def readyz() -> tuple[int, dict[str, Any]]:
            async with session.get(f"http://{http}/readyz") as response:
                return response.status, await response.json()

        _, body = await eventually(readyz, lambda r: r[0] == 200, timeout=30)
        assert body["checks"]["nats"] is True and body["checks"]["history"] is True
        await nats.stop()
        _, body = await eventually(readyz, lambda r: r[0] == 503, timeout=10)
        assert body["checks"]["nats"] is False
        said = await eventually(lambda: full_status(node),
                                lambda s: s["cluster"]["nats"]["last_error"] is not None,
                                timeout=10)
        assert said["cluster"]["nats"]["connected"] is False
        assert said["cluster"]["nats"]["jetstream"] is False
        shown = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-m", "runhook", "status", "--socket", node.socket],
            capture_output=True, text=True, check=True)
        assert "NATS JetStream UNREACHABLE (" in shown.stdout, shown.stdout
        await nats.restart(0)
        _, body = await eventually(readyz, lambda r: r[0] == 200, timeout=30)
        assert all(body["checks"].values())


RATED = BODY.replace('allow_private = true\n', 'allow_private = true\nrate = "1/min"\n', 1)


@pytest.fixture
async def rated_node(short_dir: Path, receiver: Receiver) -> AsyncIterator[tuple[NatsCluster,
                                                                               Node]]:
    async with running(short_dir, receiver, ("solo",), body=RATED) as (nats, (node,)):
        yield nats, node


async def test_a_copy_taken_and_never_sent_is_not_an_attempt(
        rated_node: tuple[NatsCluster, Node], receiver: Receiver) -> None:
    """The second execution waits for the integration's rate (1/min) on a node that is
    then killed with -9: JetStream delivers it again, to the restarted node, which
    sends it. The receiver saw one request, so it is attempt 1 (JetStream's delivery
    count, which said 2, moved it along the retry schedule)."""
    _, node = rated_node
    async with AsyncClient(node.socket) as client:
        for version in (1, 2):
            assert await client.request({"type": "artifact.created", "entity": "acme",
                                         "project": "p0", "collection": "m",
                                         "version": version}) == {"ok": True}
    first = (await receiver.next(timeout=30)).headers["webhook-id"]
    await eventually(lambda: execution(node, first),
                     lambda a: a.get("execution", {}).get("state") == "FINISHED")
    rows = await eventually(lambda: history(node.socket), lambda rows: len(rows) == 2)
    (second,) = [r["id"] for r in rows if r["id"] != first]
    assert (await execution(node, second))["execution"]["state"] == "PENDING"  # paced
    await stop_node(node, signal.SIGKILL)
    await start_node(node)
    sent = await receiver.next(timeout=40)
    assert sent.headers["webhook-id"] == second
    got = await eventually(lambda: execution(node, second),
                           lambda a: a.get("execution", {}).get("state") == "FINISHED")
    assert got["execution"]["attempts"] == 1
    assert [(a["number"], a["status"]) for a in got["attempts"]] == [(1, 200)]
    assert len(receiver.requests) == 2


class _Silent:
    """A key-value bucket behind a lost NATS server: renewals and creations are
    never answered (nats-py's own bound is the JetStream context's 5 s), the node's
    own key is."""

    async def update(self, key: str, value: bytes, last: int) -> int:
        await anyio.sleep_forever()
        raise AssertionError

    async def create(self, key: str, value: bytes) -> int:
        await anyio.sleep_forever()
        raise AssertionError

    async def put(self, key: str, value: bytes) -> int:
        return 1

    async def keys(self) -> list[str]:
        return ["solo"]


async def test_a_lease_round_ends_before_the_lease_when_nats_does_not_answer() -> None:
    """Eight owned partitions whose renewals get no answer: the round ends within
    the lease (each request bounded by a quarter of it, the renewals together), and
    keeps all eight (not known lost: asked again next round). Before, one round
    waited 5 s a renewal, one after another: 40 s against a 2 s lease."""
    bus = SimpleNamespace(settings=SimpleNamespace(node="solo", lease=2.0, partitions=8),
                          leases=_Silent(), nodes=_Silent())

    async def never(partition: int) -> None:
        raise AssertionError(f"partition {partition} started or stopped")

    leases = Leases(bus, never, never)  # type: ignore[arg-type]
    leases.owned = dict.fromkeys(range(8), 1)
    with anyio.fail_after(2.0):  # the lease itself
        await leases.tick()
    assert leases.owned == dict.fromkeys(range(8), 1)
