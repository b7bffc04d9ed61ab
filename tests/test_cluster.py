"""Cluster mode end to end (docs/cluster.md): three real nats-server processes in a
JetStream cluster and three runhook daemons over them, on loopback. Events are
pipelined through the daemons' sockets while one daemon is killed with -9,
another restarted and a NATS node killed; every acknowledged event's executions
must then exist exactly once, and be delivered."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import Receiver, eventually
from nats_cluster import NatsCluster, node_config

from runhook.client import AsyncClient
from runhook.cluster.bus import partition_of

PROJECTS = [f"p{k}" for k in range(6)]
THRESHOLD = 1.0


def series(k: int, n: int) -> list[float]:
    """Run k's loss: mostly below the threshold, above it in bursts of different
    lengths, so crossings (not values above it) are what counts."""
    out = []
    for i in range(n):
        phase = (i + k) % 11
        out.append(2.0 + phase if phase in (3, 4, 8) else 0.25 * (phase % 3))
    return out


def crossings(values: list[float]) -> list[int]:
    """By hand: the positions where the value goes from at or below the threshold
    (or nothing yet) to above it. A window of 1 makes the average the value."""
    out, above = [], False
    for i, v in enumerate(values):
        if v > THRESHOLD and not above:
            out.append(i)
        above = v > THRESHOLD
    return out


BODY = "\n".join(["""
[integrations.hook]
kind = "webhook"
url = "@URL@"
allow_http = true
allow_private = true
"""] + [f"""
[[automations]]
name = "loss-{p}"
scope = "project:acme/{p}"
event = {{ kind = "RUN_METRIC_THRESHOLD", metric = "loss", agg = "avg", window = 1, cmp = ">", threshold = {THRESHOLD} }}
cooldown = "0s"
action = {{ integration = "hook" }}

[[automations]]
name = "model-{p}"
scope = "project:acme/{p}"
event = {{ kind = "CREATE_ARTIFACT" }}
action = {{ integration = "hook" }}
""" for p in PROJECTS])


@dataclass
class Node:
    name: str
    config: Path
    socket: str
    log: Path
    process: asyncio.subprocess.Process | None = None


async def start_node(node: Node, log_level: str = "info") -> None:
    notify_path = node.config.parent / f"{node.name}.notify"
    notify_path.unlink(missing_ok=True)
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(notify_path))
    notify.setblocking(False)
    try:
        with node.log.open("ab") as log:
            node.process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "runhook", "serve", "--config", str(node.config),
                "--log-level", log_level,
                env={**os.environ, "NOTIFY_SOCKET": str(notify_path)}, stdout=log, stderr=log)
        loop = asyncio.get_running_loop()
        while True:
            try:
                message = await asyncio.wait_for(loop.sock_recv(notify, 4096), 30)
            except TimeoutError:
                raise AssertionError(f"node {node.name} not ready in 30 s:\n"
                                     f"{node.log.read_text()[-3000:]}") from None
            if b"READY=1" in message:
                return
    finally:
        notify.close()


async def stop_node(node: Node, sig: int = signal.SIGTERM) -> int:
    assert node.process is not None
    if node.process.returncode is None:
        node.process.send_signal(sig)
    return await asyncio.wait_for(node.process.wait(), 40)


async def status(node: Node) -> dict[str, Any]:
    async with AsyncClient(node.socket) as client:
        answer = await client.request({"type": "query.status"})
    assert answer["ok"], answer
    return dict(answer["status"]["cluster"])


async def balanced(nodes: list[Node]) -> list[list[int]]:
    """Until every partition has exactly one owner among `nodes`, and each node one."""
    async def owned() -> list[list[int]]:
        return [(await status(n))["partitions"] for n in nodes]
    return await eventually(owned, lambda parts: sorted(p for ps in parts for p in ps)
                            == list(range(PARTITIONS)) and all(parts), timeout=30)


PARTITIONS = 8


@pytest.fixture(params=["1s", "30m"], ids=["checkpoint-1s", "no-checkpoint-before-kill"])
async def cluster(request: Any, short_dir: Path, receiver: Receiver
                  ) -> AsyncIterator[tuple[NatsCluster, list[Node]]]:
    """Checkpoints every second, or (30m) none but at a handover: a node killed with
    -9 then leaves its partitions to be evaluated again from the stream's start,
    so every execution it made is made again, and must be recognised as the same."""
    nats = NatsCluster(short_dir / "nats", 3)
    await nats.start()
    nodes = []
    for name in ("a", "b", "c"):
        config = node_config(short_dir, name, nats.urls, BODY.replace("@URL@", receiver.url),
                             partitions=PARTITIONS, checkpoint=request.param)
        nodes.append(Node(name, config, str(short_dir / f"{name}.sock"),
                          short_dir / f"{name}.log"))
    try:
        await asyncio.gather(*(start_node(n) for n in nodes))
        await balanced(nodes)
        yield nats, nodes
    finally:
        for node in nodes:
            if node.process is not None and node.process.returncode is None:
                try:
                    await stop_node(node)
                except TimeoutError:
                    node.process.kill()
                    await node.process.wait()
        await nats.stop()


class Sender:
    """One run's events, pipelined in chunks through one node's socket; when that
    node goes away mid-chunk, the chunk's unanswered lines go again through the
    next node (their ids make the copies duplicates, not new events)."""

    def __init__(self, events: list[dict[str, Any]], sockets: list[str], first: int,
                 acked: asyncio.Event, counter: list[int]) -> None:
        self.events = events
        self.sockets = sockets
        self.at = first
        self.acked = acked
        self.counter = counter
        self.switches = 0

    async def run(self) -> None:
        for start in range(0, len(self.events), 10):
            chunk = self.events[start:start + 10]
            while chunk:
                answered = await self._send(chunk)
                for answer in answered:
                    assert answer["ok"], answer
                chunk = chunk[len(answered):]
                self.counter[0] += len(answered)
                self.acked.set()
                if chunk:  # its node went away: the rest through the next one
                    self.at = (self.at + 1) % len(self.sockets)
                    self.switches += 1
            # A pace, not a wait for anything: it spreads the stream over a few
            # seconds so the kills below land while every sender is mid-stream.
            await asyncio.sleep(0.05)

    async def _send(self, chunk: list[dict[str, Any]]) -> list[dict[str, Any]]:
        answers: list[dict[str, Any]] = []
        try:
            reader, writer = await asyncio.open_unix_connection(self.sockets[self.at])
        except OSError:  # its node is being killed: the caller moves to the next one
            await asyncio.sleep(0.05)  # a pace between tries, not a wait for anything
            return answers
        try:
            writer.write(b"".join(json.dumps(e).encode() + b"\n" for e in chunk))
            await writer.drain()
            for _ in chunk:
                line = await reader.readline()
                if not line:
                    break
                answer = json.loads(line)
                if not answer["ok"] and "not accepted" in answer.get("error", "") \
                        or "did not acknowledge" in answer.get("error", ""):
                    break  # refused while the cluster moved: sent again
                answers.append(answer)
        except OSError:
            pass
        finally:
            writer.close()
        return answers


class Rows(list[dict[str, Any]]):
    """History rows that print as a summary (a failed wait shows counts, not 1 MB)."""

    def __repr__(self) -> str:
        return f"{len(self)} rows, {dict(Counter(r['state'] for r in self))}"


async def history(socket_path: str) -> Rows:
    async with AsyncClient(socket_path) as client:
        answer = await client.request({"type": "query.history", "limit": 10000})
    assert answer["ok"], answer
    return Rows(answer["executions"])


async def test_failover_every_acknowledged_event_fires_exactly_once(
        cluster: tuple[NatsCluster, list[Node]], receiver: Receiver) -> None:
    nats, nodes = cluster
    a, b, c = nodes
    n = 600
    values = {p: series(k, n) for k, p in enumerate(PROJECTS)}
    runs = []
    for k, p in enumerate(PROJECTS):
        events: list[dict[str, Any]] = []
        for i, v in enumerate(values[p]):
            events.append({"type": "run.metrics", "entity": "acme", "project": p,
                           "run_id": f"r-{p}", "values": {"loss": v}, "id": f"m-{p}-{i}"})
            if i % 8 == 0:
                events.append({"type": "artifact.created", "entity": "acme", "project": p,
                               "collection": "m", "version": i, "id": f"a-{p}-{i}"})
        runs.append(events)
    sockets = [x.socket for x in nodes]
    acked, counter = asyncio.Event(), [0]
    senders = [Sender(events, sockets, k % 3, acked, counter) for k, events in enumerate(runs)]
    total = sum(len(e) for e in runs)
    tasks = [asyncio.create_task(s.run()) for s in senders]

    async def at_least(fraction: float) -> None:
        while counter[0] < total * fraction:
            acked.clear()
            await acked.wait()

    # b evaluates some project's events (the kill must take work away from it).
    assert {partition_of(f"project:acme/{p}", PARTITIONS) for p in PROJECTS} \
        & set((await status(b))["partitions"])
    await at_least(0.15)
    await stop_node(b, signal.SIGKILL)  # mid-stream: b's senders move to c and a
    killed_at = counter[0]
    await at_least(0.3)
    await nats.kill(2)  # one NATS node of three: R3 streams keep a quorum
    nats_killed_at = counter[0]
    await at_least(0.45)
    assert await stop_node(c) == 0  # a graceful restart: its partitions handed over...
    await start_node(c)  # ...and taken back
    await asyncio.gather(*tasks)
    assert counter[0] == total
    assert killed_at < total * 0.3 and nats_killed_at < total * 0.45  # both mid-stream
    await balanced([a, c])  # b's partitions moved to the two left
    assert sum(s.switches for s in senders) > 0  # the kill did cut some sender off

    expected_models = {e["id"] for events in runs for e in events
                       if e["type"] == "artifact.created"}
    expected_loss = {p: len(crossings(values[p])) for p in PROJECTS}
    assert all(count >= 5 for count in expected_loss.values())
    want = len(expected_models) + sum(expected_loss.values())

    rows = await eventually(lambda: history(a.socket),
                            lambda rows: len(rows) >= want
                            and all(r["state"] == "FINISHED" for r in rows), timeout=90)
    ids = [r["id"] for r in rows]
    assert len(ids) == len(set(ids)) == want  # none twice, none missing
    models = [r["event_id"] for r in rows if r["automation"].startswith("model-")]
    assert sorted(models) == sorted(expected_models)
    loss = Counter(r["automation"] for r in rows if r["automation"].startswith("loss-"))
    assert loss == Counter({f"loss-{p}": n for p, n in expected_loss.items()})
    for p in PROJECTS:  # the crossings are the hand-computed ones, value for value
        fired = sorted((r for r in rows if r["automation"] == f"loss-{p}"),
                       key=lambda r: int(r["event_id"].rsplit("-", 1)[1]))
        assert [r["event_id"] for r in fired] == [f"m-{p}-{i}" for i in crossings(values[p])]
        assert [r["context"]["metric_values"][-1] for r in fired] == \
            [values[p][i] for i in crossings(values[p])]

    delivered = {r.headers.get("webhook-id") for r in receiver.requests}
    assert delivered == set(ids)  # every execution delivered (some maybe twice), no stranger

    # History is the same from another node (its own mirror of the stream).
    other = await eventually(lambda: history(c.socket),
                             lambda rows: len(rows) >= want
                             and all(r["state"] == "FINISHED" for r in rows), timeout=30)
    assert sorted(r["id"] for r in other) == sorted(ids)


@pytest.fixture
async def one_node(short_dir: Path, receiver: Receiver) -> AsyncIterator[tuple[NatsCluster,
                                                                             Node]]:
    nats = NatsCluster(short_dir / "nats", 1)
    await nats.start()
    config = node_config(short_dir, "solo", nats.urls, BODY.replace("@URL@", receiver.url),
                         partitions=PARTITIONS)
    node = Node("solo", config, str(short_dir / "solo.sock"), short_dir / "solo.log")
    try:
        await start_node(node)
        await balanced([node])
        yield nats, node
    finally:
        if node.process is not None and node.process.returncode is None:
            assert await stop_node(node) == 0
        await nats.stop()


async def test_a_failed_delivery_is_retried_durably_with_the_same_webhook_id(
        one_node: tuple[NatsCluster, Node], receiver: Receiver) -> None:
    """A 503, then 200: two attempts of one execution, JetStream redelivering it after
    the schedule's first delay (5 s ± 20 %); the node's history records both."""
    _, node = one_node
    receiver.responses = [(503, "busy", {})]
    async with AsyncClient(node.socket) as client:
        answer = await client.request({"type": "artifact.created", "entity": "acme",
                                       "project": "p0", "collection": "m", "version": 1})
    assert answer == {"ok": True}
    first, second = [await receiver.next(timeout=30) for _ in range(2)]
    ids = {r.headers["webhook-id"] for r in (first, second)}
    assert len(ids) == 1
    assert second.at - first.at >= 4.0  # the retry delay, not an immediate resend
    (execution_id,) = ids

    async def settled() -> dict[str, Any]:
        async with AsyncClient(node.socket) as client:
            return await client.request({"type": "query.execution", "id": execution_id})
    got = await eventually(settled, lambda a: a.get("execution", {}).get("state") == "FINISHED")
    assert got["execution"]["attempts"] == 2
    assert [a["status"] for a in got["attempts"]] == [503, 200]
    async with AsyncClient(node.socket) as client:  # the node's own deliveries, by integration
        integrations = (await client.request({"type": "query.status"}))["status"]["integrations"]
    assert [(i["name"], i["sent"], i["last_error"]) for i in integrations] == [("hook", 1, None)]


async def test_foreign_messages_on_the_streams_are_skipped_not_retried_forever(
        one_node: tuple[NatsCluster, Node], receiver: Receiver) -> None:
    """Someone else's bytes on runhook's subjects: logged and skipped; events after
    them are evaluated and delivered as ever."""
    import nats as nats_client

    cluster, node = one_node
    nc = await nats_client.connect(servers=cluster.urls)
    try:
        js = nc.jetstream()
        scope = "project:acme/p0"
        await js.publish(f"runhook.ev.{partition_of(scope, PARTITIONS)}", b"\xc1 not msgpack",
                         headers={"Runhook-Scope": scope, "Runhook-Time": "1",
                                  "Runhook-Received": "1"})
        await js.publish("runhook.ex", b"[1, 2]")
        await js.publish("runhook.hist", b'["created", [1]]')
    finally:
        await nc.close()
    async with AsyncClient(node.socket) as client:
        answer = await client.request({"type": "artifact.created", "entity": "acme",
                                       "project": "p0", "collection": "m", "version": 2})
    assert answer == {"ok": True}
    delivered = await receiver.next(timeout=30)
    assert json.loads(delivered.body)["data"]["automation_name"] == "model-p0"
    log = await eventually(lambda: asyncio.to_thread(node.log.read_text),
                           lambda text: "is not an event" in text
                           and "is not an execution" in text and "not one of ours" in text)
    assert "Traceback" not in log


async def refused(config: Path, log: Path) -> str:
    """Start a node that must refuse to start: its log, once it exited non-zero, with
    no traceback in it (a refusal is a sentence)."""
    with log.open("wb") as out:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "runhook", "serve", "--config", str(config),
            stdout=out, stderr=out)
    assert await asyncio.wait_for(process.wait(), 60) != 0
    text = log.read_text()
    assert "Traceback" not in text
    return text


async def test_a_second_live_node_of_the_same_name_is_refused_at_start(
        one_node: tuple[NatsCluster, Node], short_dir: Path, receiver: Receiver) -> None:
    """Two nodes named alike would hold one set of leases: the second must not start.
    (It waits one lease first: the name may be its own, killed and restarted.)"""
    cluster, node = one_node
    config = node_config(short_dir / "twin", node.name, cluster.urls,
                         BODY.replace("@URL@", receiver.url), partitions=PARTITIONS)
    text = await refused(config, short_dir / "twin.log")
    assert "cluster.node: a live node is already named 'solo'" in text
    assert (await status(node))["partitions"] == list(range(PARTITIONS))  # undisturbed


async def test_a_node_splitting_scopes_otherwise_is_refused_at_start(
        one_node: tuple[NatsCluster, Node], short_dir: Path, receiver: Receiver) -> None:
    """The cluster was made with 8 partitions; a node configured with 4 would put a
    scope's events in another partition than its peers: it must not start."""
    cluster, _ = one_node
    config = node_config(short_dir / "odd", "odd", cluster.urls,
                         BODY.replace("@URL@", receiver.url), partitions=4)
    text = await refused(config, short_dir / "odd.log")
    assert "cluster.partitions: 4 here, but the cluster's streams were made with 8" in text


CRASH_BODY = """
[integrations.hook]
kind = "webhook"
url = "@URL@"
allow_http = true
allow_private = true

[[automations]]
name = "crashed"
scope = "project:acme/p0"
event = { kind = "RUN_STATE", states = ["crashed"], heartbeat_timeout = "2s" }
action = { integration = "hook" }
"""


async def test_a_crash_noticed_again_by_the_next_owner_is_the_same_execution(
        short_dir: Path, receiver: Receiver) -> None:
    """A run goes silent; its partition's owner declares it crashed and delivers that;
    then the owner is killed with -9. The next owner has no checkpoint after the run's
    events (checkpoints only at hand-overs), so it replays them, the run is running
    again in its book, and it notices the same silence: the execution it makes has the
    same id, which JetStream drops. One webhook-id, one execution in the history."""
    nats = NatsCluster(short_dir / "nats", 1)
    await nats.start()
    nodes = []
    for name in ("a", "b"):
        config = node_config(short_dir, name, nats.urls,
                             CRASH_BODY.replace("@URL@", receiver.url),
                             partitions=PARTITIONS, checkpoint="30m", client_heartbeat="1s")
        nodes.append(Node(name, config, str(short_dir / f"{name}.sock"),
                          short_dir / f"{name}.log"))
    try:
        # At debug level each execution made is logged, so its making can be awaited.
        await asyncio.gather(*(start_node(n, "debug") for n in nodes))
        await balanced(nodes)
        partition = partition_of("project:acme/p0", PARTITIONS)
        owner, other = (nodes if partition in (await status(nodes[0]))["partitions"]
                        else nodes[::-1])
        async with AsyncClient(other.socket) as client:
            answer = await client.request({"type": "run.state", "entity": "acme",
                                           "project": "p0", "run_id": "r1",
                                           "state": "running"})
        assert answer == {"ok": True}
        first = await receiver.next(timeout=30)
        crash_id = first.headers["webhook-id"]
        assert json.loads(first.body)["data"]["run_status"] == "crashed"
        await stop_node(owner, signal.SIGKILL)
        # The next owner's own crash, of the same silence: awaited in its log.
        await eventually(lambda: asyncio.to_thread(other.log.read_text),
                         lambda text: f"execution {crash_id} created" in text, timeout=30)
        rows = await eventually(lambda: history(other.socket), lambda rows: len(rows) >= 1)
        assert [r["id"] for r in rows] == [crash_id]
        assert {r.headers["webhook-id"] for r in receiver.requests} == {crash_id}
    finally:
        for node in nodes:
            if node.process is not None and node.process.returncode is None:
                await stop_node(node)
        await nats.stop()


async def test_a_410_disables_the_integration_on_the_node_that_saw_it(
        one_node: tuple[NatsCluster, Node], receiver: Receiver) -> None:
    """As on one machine: the 410 fails its execution with the same reason and attempt
    record, and the node sends nothing more to that integration; what comes after
    waits, PENDING."""
    _, node = one_node
    receiver.responses = [(410, "gone", {})]
    async with AsyncClient(node.socket) as client:
        assert await client.request({"type": "artifact.created", "entity": "acme",
                                     "project": "p0", "collection": "m",
                                     "version": 1}) == {"ok": True}
    gone = await receiver.next(timeout=30)
    execution_id = gone.headers["webhook-id"]

    async def execution(eid: str) -> dict[str, Any]:
        async with AsyncClient(node.socket) as client:
            return await client.request({"type": "query.execution", "id": eid})
    failed = await eventually(lambda: execution(execution_id),
                              lambda a: a.get("execution", {}).get("state") == "FAILED")
    assert failed["execution"]["reason"] == "HTTP 410"
    assert [(a["number"], a["status"], a["error"]) for a in failed["attempts"]] \
        == [(1, 410, "HTTP 410")]
    async with AsyncClient(node.socket) as client:
        (hook,) = (await client.request({"type": "query.status"}))["status"]["integrations"]
    assert hook["disabled"] == f"HTTP 410 (execution {execution_id}); `runhook enable hook` resumes"
    assert hook["last_error"] == "HTTP 410"

    async with AsyncClient(node.socket) as client:
        assert await client.request({"type": "artifact.created", "entity": "acme",
                                     "project": "p0", "collection": "m",
                                     "version": 2}) == {"ok": True}
    held = await eventually(lambda: asyncio.to_thread(node.log.read_text),
                            lambda text: "is not sent: integration hook is disabled" in text)
    (line,) = [t for t in held.splitlines() if "is not sent" in t]
    waiting = line.split("execution ")[1].split(" ")[0]
    assert (await execution(waiting))["execution"]["state"] == "PENDING"
    assert len(receiver.requests) == 1  # the 410's alone
