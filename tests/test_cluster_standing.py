"""Each partition's health in `runhook status` on a cluster node (docs/cluster.md,
Operations): owner, state, lag, last checkpoint, back-off and a corrupt checkpoint.
Two runhook nodes over one real nats-server; one scenario, one cluster."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import nats
from conftest import eventually
from nats_cluster import NatsCluster, free_port, node_config
from test_cluster import Node, balanced, history, start_node, status, stop_node

from runhook.cli.cluster_status import partitions as table
from runhook.client import AsyncClient
from runhook.cluster import checkpoint
from runhook.cluster.bus import CHECKPOINTS, POSITIONS, partition_of
from runhook.cluster.positions import Position

PARTITIONS = 8
PROJECTS = [f"p{k}" for k in range(24)]
BODY = """
[integrations.hook]
kind = "webhook"
url = "http://127.0.0.1:9/hook"
allow_http = true
allow_private = true
""" + "".join(f"""
[[automations]]
name = "model-{p}"
scope = "project:acme/{p}"
event = {{ kind = "CREATE_ARTIFACT" }}
action = {{ integration = "hook" }}
""" for p in PROJECTS)


def project_of(partition: int) -> str:
    return next(p for p in PROJECTS if partition_of(f"project:acme/{p}", PARTITIONS) == partition)


async def send(node: Node, project: str, version: int) -> None:
    async with AsyncClient(node.socket) as client:
        answer = await client.request({"type": "artifact.created", "entity": "acme",
                                       "project": project, "collection": "m",
                                       "version": version})
    assert answer == {"ok": True}, answer


async def rows(node: Node) -> dict[int, dict[str, Any]]:
    return {p["number"]: p for p in (await status(node))["partition_status"]}


async def test_status_shows_each_partitions_owner_lag_checkpoint_and_a_corrupt_one(
        short_dir: Path) -> None:
    """Both nodes list all 8 partitions, theirs running with lag 0, the others' owned
    by the other node. Partition x's checkpoint is overwritten with garbage and y's
    with a checkpoint of format 99, both nodes killed with -9, a started again:
    x starts at its position without the state (the status says so; it evaluates
    the next event, and does not fire its first again); y is refused, and the 3
    events sent to it since count as its lag. z's names a scope of x's partition too:
    z runs without it, and says so."""
    cluster = NatsCluster(short_dir / "nats", 1)
    await cluster.start()
    nodes = []
    console = f"127.0.0.1:{free_port()}"
    for name in ("a", "b"):
        config = node_config(short_dir, name, cluster.urls, BODY, partitions=PARTITIONS,
                             http=console if name == "a" else "")
        nodes.append(Node(name, config, str(short_dir / f"{name}.sock"),
                          short_dir / f"{name}.log"))
    a, b = nodes
    nc = await nats.connect(cluster.urls)
    try:
        for node in nodes:
            await start_node(node)
        owned = await balanced(nodes)
        x, y, z = 0, 1, 2
        for partition in (x, y, z):
            await send(a, project_of(partition), 1)

        def settled(found: dict[int, dict[str, Any]], me: str, mine: list[int], other: str
                    ) -> bool:
            return sorted(found) == list(range(PARTITIONS)) and all(
                (p["owner"], p["state"], p["lag"], p["failures"], p["corrupt"])
                == (me, "running", 0, 0, None) if n in mine
                else (p["owner"], p["state"], p["lag"]) == (other, "elsewhere", None)
                for n, p in found.items()) \
                and all(found[n]["checkpoint"] is not None for n in (x, y, z) if n in mine)

        await eventually(lambda: rows(a), lambda f: settled(f, "a", owned[0], "b"), timeout=30)
        await eventually(lambda: rows(b), lambda f: settled(f, "b", owned[1], "a"), timeout=30)
        for node, mine in zip(nodes, owned, strict=True):
            found = await rows(node)
            for n in (x, y, z):
                if n in mine:  # the checkpoint holds the event sent: written by its owner
                    point = found[n]["checkpoint"]
                    assert point["node"] == node.name and point["seq"] >= 1, point
                    assert 0 <= point["age_s"] < 30, point

        for node in nodes:
            await stop_node(node, signal.SIGKILL)
        js = nc.jetstream()
        positions = await js.key_value(POSITIONS)
        store = await js.object_store(CHECKPOINTS)
        spot = {n: msgspec.msgpack.decode((await positions.get(f"p{n}")).value, type=Position)
                for n in (x, y, z)}
        await store.put(spot[x].name, b"not a checkpoint")
        real = checkpoint.decode((await store.get(spot[y].name)).data or b"")
        await store.put(spot[y].name, msgspec.msgpack.encode(
            msgspec.structs.replace(real, format=99)))
        # z's names a scope of x's partition (whose local state loading it would wipe).
        real = checkpoint.decode((await store.get(spot[z].name)).data or b"")
        foreign = f"project:acme/{project_of(x)}"
        await store.put(spot[z].name, msgspec.msgpack.encode(msgspec.structs.replace(
            real, scopes={**real.scopes, foreign: {}},
            times={foreign: checkpoint.Times({"r1": {"": 1.0}})})))

        await start_node(a)
        for version in (2, 3, 4):
            await send(a, project_of(y), version)
        garbage = (f"checkpoint corrupt: undecodable (Expected `array`, got `int`); started at "
                   f"stream sequence {spot[x].seq} without its state")
        refused = ("checkpoint corrupt: checkpoint format 99 is not one this node reads "
                   f"({', '.join(map(str, checkpoint.READS))}): a newer runhook wrote it; "
                   "refused: not evaluated here, left to a node that reads it")
        left_out = (f"checkpoint corrupt: it names 1 scope of other partitions (first "
                    f"{foreign!r}); restored without them")
        found = await eventually(
            lambda: rows(a), lambda f: f[x]["corrupt"] == garbage and f[x]["state"] == "running"
            and f[y]["state"] == "back-off" and f[y]["lag"] == 3
            and (f[z]["corrupt"], f[z]["state"]) == (left_out, "running"), timeout=40)
        assert (found[y]["owner"], found[y]["corrupt"], found[y]["failing"]) == \
            ("a", refused, refused)
        assert found[y]["failures"] >= 1 and found[y]["retry_in_s"] is not None
        assert found[y]["checkpoint"]["seq"] == spot[y].seq
        assert (found[x]["owner"], found[x]["lag"], found[x]["checkpoint"]["seq"]) == \
            ("a", 0, spot[x].seq)

        # x goes on: its next event fires; the first is not evaluated (nor fired) again.
        await send(a, project_of(x), 5)
        made = await eventually(lambda: history(a.socket), lambda r: sorted(
            e["event_kind"] for e in r if e["automation"] == f"model-{project_of(x)}") ==
            ["CREATE_ARTIFACT", "CREATE_ARTIFACT"], timeout=30)
        assert len(made) == 4  # x's two, y's first (its 3 later ones wait), z's first

        # The CLI's table says it in words.
        cli = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "runhook", "status", "--config", str(a.config),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(cli.communicate(), 60)
        assert cli.returncode == 0, err
        line = next(ln for ln in out.decode().splitlines() if ln.startswith(f"{x} "))
        assert line.split()[:4] == [str(x), "a", "running", "0"] and line.endswith(garbage)

        # And the console's overview, row by row.
        login = json.loads(Path(f"{a.socket}.console").read_text())
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            async with http.get(f"{login['url']}login?token={login['token']}",
                                allow_redirects=False) as r:
                assert r.status == 303, r.status
            async with http.get(f"http://{console}/") as page:
                assert page.status == 200
                text = await page.text()
        assert "<h2>Partitions" in text and garbage in text  # y's row moves between states
    finally:
        await nc.close()
        for node in nodes:
            if node.process is not None and node.process.returncode is None:
                await stop_node(node)
        await cluster.stop()


def test_the_table_shows_owner_state_lag_checkpoint_and_the_problem_once() -> None:
    """A refused partition's problem is both its corrupt checkpoint and its failure:
    said once; the next retry rounds to seconds; an unowned one has dashes."""
    why = "checkpoint corrupt: checkpoint format 99 is not 1; refused"
    lines = table([
        {"number": 0, "owner": "a", "state": "running", "lag": 12,
         "checkpoint": {"seq": 40, "node": "b", "age_s": 3.4}, "failures": 0,
         "retry_in_s": None, "failing": None, "corrupt": None},
        {"number": 1, "owner": "a", "state": "back-off", "lag": 3,
         "checkpoint": {"seq": 7, "node": "a", "age_s": None}, "failures": 2,
         "retry_in_s": 1.6, "failing": why, "corrupt": why},
        {"number": 2, "owner": None, "state": "unowned", "lag": None, "checkpoint": None,
         "failures": 0, "retry_in_s": None, "failing": None, "corrupt": None}])
    assert [ln.split() for ln in lines] == [
        ["PARTITION", "OWNER", "STATE", "LAG", "CHECKPOINT", "BY", "AGE", "FAILURES", "PROBLEM"],
        ["0", "a", "running", "12", "40", "b", "3s"],
        ["1", "a", "back-off", "3", "7", "a", "2", "(next", "in", "2s)", *why.split()],
        ["2", "-", "unowned"]]
