"""`make bench-cluster`: cluster mode's throughput with 1 and 3 nodes and its
fail-over time, beside one single-machine SQLite daemon in the same run.

Each event is an artifact creation that fires one webhook execution to a receiver
in its own process. "acked" is the rate at which the clients' lines were answered
ok (for a cluster: after the JetStream ack); "delivered" the rate until the
receiver had every webhook. Fail-over: a partition's owner is killed with -9, an
event for that partition is sent at once through another node, and the time to
its webhook arriving is measured. "NATS messages / execution" counts every message
the runhook nodes' connections sent or were sent (the servers' /connz), from the
first event to the last webhook, divided by the executions; "node CPU" is the
nodes' user + system time over the same span: both hold under any load, unlike
the rates."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
# The NATS servers on loopback: the tests' harness (not shipped in the package).
sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))

from harness import daemon, pipeline, rate, report
from nats_cluster import NatsCluster, node_config
from scenarios import Receiver

from runhook.client import AsyncClient
from runhook.cluster.bus import partition_of

PROJECTS = 12
PARTITIONS = 12


class Monitored(NatsCluster):
    """The tests' NATS cluster, each server with its monitoring port (for /connz)."""

    def __init__(self, directory: Path, size: int) -> None:
        super().__init__(directory, size, monitor=True)

    def messages(self) -> int:
        """Messages the runhook nodes' connections sent and were sent, on every server."""
        total = 0
        for port in (n.monitor_port for n in self.nodes):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/connz?limit=1000",
                                            timeout=5) as answer:
                    found = json.load(answer)
            except OSError:
                continue  # a server killed
            for conn in found.get("connections") or ():
                if str(conn.get("name", "")).startswith("runhook "):
                    total += conn["in_msgs"] + conn["out_msgs"]
        return total


def cpu_seconds(pids: list[int]) -> float:
    """User + system time of these processes so far."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def body(url: str) -> str:
    out = [f"""
[integrations.hook]
kind = "webhook"
url = "{url}/hook"
allow_http = true
allow_private = true
max_in_flight = 32
"""]
    for k in range(PROJECTS):
        out.append(f"""
[[automations]]
name = "model-{k}"
scope = "project:acme/p{k}"
event = {{ kind = "CREATE_ARTIFACT" }}
action = {{ integration = "hook" }}
""")
    return "\n".join(out)


def events(count: int, part: int, parts: int) -> list[bytes]:
    return [json.dumps({"type": "artifact.created", "entity": "acme",
                        "project": f"p{i % PROJECTS}", "collection": "m", "version": i,
                        "id": f"e{i}"}).encode() + b"\n"
            for i in range(part, count, parts)]


async def start_node(config: Path, started: dict[Path, asyncio.subprocess.Process]
                     ) -> asyncio.subprocess.Process:
    notify_path = config.with_suffix(".notify")
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(notify_path))
    notify.setblocking(False)
    log = config.with_suffix(".log").open("ab")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "runhook", "serve", "--config", str(config),
        env={**os.environ, "NOTIFY_SOCKET": str(notify_path)}, stdout=log, stderr=log)
    started[config] = process  # stopped with the others whatever happens next
    log.close()
    try:
        while b"READY=1" not in await asyncio.wait_for(
                asyncio.get_running_loop().sock_recv(notify, 4096), 60):
            pass
    finally:
        notify.close()
    return process


async def owners(sockets: list[str]) -> dict[int, int]:
    """partition -> index of the node that owns it."""
    out = {}
    for index, path in enumerate(sockets):
        async with AsyncClient(path) as client:
            answer = await client.request({"type": "query.status"})
        for partition in answer["status"]["cluster"]["partitions"]:
            out[partition] = index
    return out


async def balanced(sockets: list[str]) -> None:
    for _ in range(300):
        found = await owners(sockets)
        if len(found) == PARTITIONS and len(set(found.values())) == len(sockets):
            return
        await asyncio.sleep(0.1)
    raise RuntimeError("the cluster did not balance in 30 s")


async def cluster_run(directory: Path, nats: Monitored, nodes: int, count: int,
                      receiver: Receiver, failover: bool
                      ) -> tuple[float, float, float | None, float, float]:
    """(acked s, delivered s, fail-over s, NATS messages and node CPU s per execution)."""
    names = "abc"[:nodes]
    configs = [node_config(directory / f"x{nodes}", name, nats.urls, body(receiver.url),
                           partitions=PARTITIONS, lease="2s", checkpoint="5s")
               for name in names]
    started: dict[Path, asyncio.subprocess.Process] = {}
    sockets = [str(c.with_suffix(".sock")) for c in configs]
    try:
        # A node that never says READY ends the run; the others are stopped with it.
        await asyncio.gather(*(start_node(c, started) for c in configs))
        processes = [started[c] for c in configs]
        await balanced(sockets)
        receiver.reset()
        await asyncio.sleep(1.0)  # the nodes' start-up traffic settled
        messages = nats.messages()
        cpu = cpu_seconds([p.pid for p in processes])
        start = time.perf_counter()
        await asyncio.gather(*(asyncio.to_thread(
            pipeline, path, events(count, i, nodes), len(range(i, count, nodes)))
            for i, path in enumerate(sockets)))
        acked = time.perf_counter() - start
        delivered = await asyncio.to_thread(receiver.wait_for, count) - start
        await asyncio.sleep(0.5)  # the last attempts' records mirrored
        per_message = (nats.messages() - messages) / count
        per_cpu = (cpu_seconds([p.pid for p in processes]) - cpu) / count
        moved = await measure_failover(sockets, processes, receiver, count) if failover else None
        return acked, delivered, moved, per_message, per_cpu
    finally:
        for process in started.values():
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
        for process in started.values():
            try:
                await asyncio.wait_for(process.wait(), 60)
            except TimeoutError:
                process.kill()


async def measure_failover(sockets: list[str], processes: list[asyncio.subprocess.Process],
                           receiver: Receiver, already: int) -> float:
    """kill -9 the owner of p0's partition, then at once send a p0 event through
    another node: seconds until its webhook arrives."""
    partition = partition_of("project:acme/p0", PARTITIONS)
    victim = (await owners(sockets))[partition]
    other = sockets[(victim + 1) % len(sockets)]
    processes[victim].send_signal(signal.SIGKILL)
    await processes[victim].wait()
    start = time.perf_counter()
    async with AsyncClient(other) as client:
        answer = await client.request(json.loads(events(1, 0, 1)[0].replace(
            b'"e0"', b'"failover"')))
    assert answer["ok"], answer
    return await asyncio.to_thread(receiver.wait_for, already + 1, 120.0) - start


async def main() -> int:
    quick = "--quick" in sys.argv
    count = 600 if quick else 20_000
    if "--count" in sys.argv:
        count = int(sys.argv[sys.argv.index("--count") + 1])
    directory = Path(tempfile.mkdtemp(prefix="rhc", dir="/tmp"))
    receiver = Receiver()
    rows: list[tuple[str, str, str, str]] = []
    started = time.perf_counter()
    try:
        with daemon(body(receiver.url)) as single:
            receiver.reset()
            start = time.perf_counter()
            await asyncio.to_thread(pipeline, single.socket, events(count, 0, 1), count)
            single_acked = time.perf_counter() - start
            single_delivered = await asyncio.to_thread(receiver.wait_for, count) - start
        rows.append(("one daemon, SQLite: acked", rate(count, single_acked), "-", "the baseline"))
        rows.append(("one daemon, SQLite: delivered", rate(count, single_delivered), "-",
                     "the baseline"))
        for nodes in (1, 3):
            nats = Monitored(directory / f"nats{nodes}", 3)
            await nats.start()
            try:
                acked, delivered, moved, messages, cpu = await cluster_run(directory, nats, nodes, count,
                                                            receiver, failover=nodes == 3)
            finally:
                await nats.stop()
            what = f"cluster, {nodes} node{'s' if nodes > 1 else ''} + 3 NATS"
            rows.append((f"{what}: acked", rate(count, acked),
                         f"SQLite {rate(count, single_acked)}", f"{single_acked / acked:.0%}"))
            rows.append((f"{what}: delivered", rate(count, delivered),
                         f"SQLite {rate(count, single_delivered)}",
                         f"{single_delivered / delivered:.0%}"))
            rows.append((f"{what}: NATS messages / execution", f"{messages:.1f}", "-",
                         "sent and received by the nodes"))
            rows.append((f"{what}: node CPU / execution", f"{cpu * 1e3:.2f} ms", "-",
                         "user + system, all nodes"))
            if moved is not None:
                rows.append(("fail-over: kill -9 -> next webhook of a moved partition",
                             f"{moved:.2f} s", "lease 2 s", "lease + takeover + delivery"))
    finally:
        receiver.close()
        shutil.rmtree(directory, ignore_errors=True)
    report(f"runhook cluster benchmark ({'quick' if quick else 'full'}, {count} events)",
           rows, started)
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
