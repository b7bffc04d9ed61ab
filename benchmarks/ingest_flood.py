"""Floods a real daemon as issue 23 did and prints its RSS before and after: HTTP clients
that send ~4.6 MB of firing events and hang up, over and over; then socket clients
that send and never read. Also how long another client's one event then takes.

    PYTHONPATH=src python benchmarks/ingest_flood.py [--seconds 20] [--budget-mib 16]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

CONFIG = """
[server]
socket = "{d}/ev.sock"
http = ""
database = "{d}/runhook.db"
ingest_budget_mib = {budget}

[secrets]
T = {{ file = "{d}/token" }}

[ingest]
listen = "127.0.0.1:{port}"
max_connections = 64

[ingest.tokens.t]
secret = "T"
scopes = ["*"]

[[automations]]
name = "record"
scope = "project:acme/vision"
event = {{ kind = "CREATE_ARTIFACT" }}
action = {{ kind = "none" }}
cooldown = "0"
"""

LINE = json.dumps({"type": "artifact.created", "entity": "acme", "project": "vision",
                   "collection": "ds", "version": 1}).encode() + b"\n"
BODY = LINE * (4_600_000 // len(LINE))


def rss_mb(pid: int) -> float:
    for row in Path(f"/proc/{pid}/status").read_text().splitlines():
        if row.startswith("VmRSS:"):
            return int(row.split()[1]) / 1024
    return 0.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def post_and_hang_up(port: int, stop: float) -> int:
    sent = 0
    head = (f"POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer secret-token-123\r\n"
            f"Content-Type: application/x-ndjson\r\nContent-Length: {len(BODY)}\r\n\r\n").encode()
    while time.monotonic() < stop:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(head + BODY)
            await asyncio.wait_for(writer.drain(), 2)
            sent += 1
        except (OSError, TimeoutError):
            pass
        finally:
            writer.transport.abort()
    return sent


async def one_event(path: str) -> float:
    start = time.monotonic()
    reader, writer = await asyncio.open_unix_connection(path)
    writer.write(LINE)
    await writer.drain()
    await reader.readline()
    writer.close()
    return time.monotonic() - start


async def budget(path: str) -> str:
    reader, writer = await asyncio.open_unix_connection(path)
    writer.write(b'{"type": "query.status"}\n')
    await writer.drain()
    status = json.loads(await reader.readline())
    writer.close()
    return str(status.get("status", status).get("ingest_budget", "?"))


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--budget-mib", type=int, default=8)
    parser.add_argument("--clients", type=int, default=100)
    args = parser.parse_args()
    d = Path(tempfile.mkdtemp(prefix="rh"))
    (d / "token").write_text("secret-token-123")
    port = free_port()
    (d / "c.toml").write_text(CONFIG.format(d=d, port=port, budget=args.budget_mib))
    daemon = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "runhook", "serve", "--config", str(d / "c.toml"),
        stderr=open(d / "log", "wb"), env=os.environ)
    while not (d / "ev.sock").exists():
        await asyncio.sleep(0.1)
    await asyncio.sleep(1)
    pid = daemon.pid
    print(f"idle: RSS {rss_mb(pid):.0f} MB")
    stop = time.monotonic() + args.seconds
    peak = 0.0
    tasks = [asyncio.ensure_future(post_and_hang_up(port, stop)) for _ in range(8)]
    while time.monotonic() < stop:
        await asyncio.sleep(1)
        peak = max(peak, rss_mb(pid))
        anon = [r for r in Path(f"/proc/{pid}/status").read_text().splitlines()
                if r.startswith(("RssAnon", "RssFile"))]
        print(f"  RSS {rss_mb(pid):.0f} MB {anon}, budget {await budget(str(d / 'ev.sock'))}")
    bodies = sum(await asyncio.gather(*tasks))
    print(f"HTTP send-and-hang-up, {args.seconds:.0f}s, {bodies} bodies of 4.6 MB: "
          f"peak RSS {peak:.0f} MB, now {rss_mb(pid):.0f} MB")
    clients = []
    for _ in range(args.clients):
        c = socket.socket(socket.AF_UNIX)
        c.connect(str(d / "ev.sock"))
        c.setblocking(False)
        clients.append(c)
    block = LINE * 20_000
    for _ in range(40):  # each client writes until the daemon stops reading it
        for c in clients:
            try:
                c.send(block)
            except BlockingIOError:
                pass
        await asyncio.sleep(0.05)
    await asyncio.sleep(2)
    print(f"{args.clients} socket clients that never read: RSS {rss_mb(pid):.0f} MB; "
          f"another client's event took {await one_event(str(d / 'ev.sock')):.2f}s")
    print(f"  budget {await budget(str(d / 'ev.sock'))}")
    for c in clients:
        c.close()
    daemon.terminate()
    await daemon.wait()


if __name__ == "__main__":
    asyncio.run(main())
