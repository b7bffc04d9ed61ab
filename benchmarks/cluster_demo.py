"""`make cluster-demo`: three NATS servers in one JetStream cluster and three runhook
nodes over them, on loopback, with a webhook receiver that prints what arrives;
until Ctrl-C. Kill a node (its pid is printed) and watch its partitions move."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from pathlib import Path

from aiohttp import web

# The NATS servers on loopback: the tests' harness (not shipped in the package).
sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))
from nats_cluster import NatsCluster, free_port, node_config

from runhook.client import AsyncClient
from runhook.cluster.bus import partition_of

NODES = ("a", "b", "c")
PARTITIONS = 8
BODY = """
[integrations.printer]
kind = "webhook"
url = "@URL@"
allow_http = true
allow_private = true

[[automations]]
name = "new-model"
scope = "project:acme/vision"
event = { kind = "CREATE_ARTIFACT" }
action = { integration = "printer" }

[[automations]]
name = "loss-diverged"
scope = "project:acme/vision"
event = { kind = "RUN_METRIC_THRESHOLD", metric = "loss", agg = "avg", window = 3, cmp = ">", threshold = 10.0 }
cooldown = "0s"
action = { integration = "printer" }
"""


async def receiver(port: int) -> web.AppRunner:
    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        print(f"  <- webhook {request.headers.get('webhook-id')}: {body[:100].decode()}",
              flush=True)
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


async def _owner(directory: Path) -> tuple[str, int]:
    """Which node owns project:acme/vision's partition, once the nodes have settled."""
    partition = partition_of("project:acme/vision", PARTITIONS)
    for _ in range(300):
        for name in NODES:
            try:
                async with AsyncClient(str(directory / f"{name}.sock")) as client:
                    answer = await client.request({"type": "query.status"})
            except OSError:
                continue
            cluster = answer.get("status", {}).get("cluster") or {}
            if partition in cluster.get("partitions", ()) and len(cluster.get("live", ())) == 3:
                return name, partition
        await asyncio.sleep(0.1)
    return "?", partition


async def main(directory: Path) -> None:
    directory = directory.resolve()
    nats = NatsCluster(directory / "nats", 3)
    print(f"starting 3 NATS servers under {directory / 'nats'} ...", flush=True)
    await nats.start()
    port = free_port()
    hooks = await receiver(port)
    processes = []
    try:
        for name in NODES:
            config = node_config(directory, name, nats.urls,
                                 BODY.replace("@URL@", f"http://127.0.0.1:{port}/hook"),
                                 partitions=PARTITIONS, http=f"127.0.0.1:{free_port()}")
            log = (directory / f"{name}.log").open("ab")
            processes.append(await asyncio.create_subprocess_exec(
                sys.executable, "-m", "runhook", "serve", "--config", str(config),
                stdout=log, stderr=log, start_new_session=True))
        owner = await _owner(directory)
        print("\nNATS:        " + ", ".join(nats.urls))
        for name, process in zip(NODES, processes, strict=True):
            print(f"node {name}:      socket {directory / name}.sock  pid {process.pid}  "
                  f"log {directory / name}.log  config {directory / name}.toml")
        sock = directory / "a.sock"
        print(f"""
Send events to any node's socket, for example:
  .venv/bin/runhook send --socket {sock} \\
      '{{"type": "artifact.created", "entity": "acme", "project": "vision", "collection": "resnet", "version": 1}}'
  for v in 5 12 15 20; do .venv/bin/runhook send --socket {directory / 'b.sock'} \\
      "{{\\"type\\": \\"run.metrics\\", \\"entity\\": \\"acme\\", \\"project\\": \\"vision\\", \\"run_id\\": \\"r1\\", \\"values\\": {{\\"loss\\": $v}}}}"; done
  .venv/bin/runhook status --socket {directory / 'c.sock'}    # who owns which partition
  .venv/bin/runhook history --socket {directory / 'c.sock'}   # the same history on every node
project:acme/vision is partition {owner[1]}, owned by node {owner[0]}: kill -9 its pid and
watch `runhook status` on another node show the partition moved within seconds (send
another event: it is still delivered). Bring the node back with
  .venv/bin/runhook serve --config {directory / owner[0]}.toml
and it takes its partitions back. Ctrl-C stops everything (nodes first, then NATS).
""", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    finally:
        print("stopping ...", flush=True)
        for process in processes:
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
        for process in processes:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(process.wait(), 30)
        await hooks.cleanup()
        await nats.stop()


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1] if len(sys.argv) > 1 else "var/cluster")))
