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

from runhook.cluster.rig import NatsCluster, free_port, node_config

NODES = ("a", "b", "c")
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
                                 http=f"127.0.0.1:{free_port()}")
            log = (directory / f"{name}.log").open("ab")
            processes.append(await asyncio.create_subprocess_exec(
                sys.executable, "-m", "runhook", "serve", "--config", str(config),
                stdout=log, stderr=log))
        await asyncio.sleep(2)
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
Kill a node (kill -9 PID) and its partitions move to the others within seconds.
Ctrl-C stops everything.
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
