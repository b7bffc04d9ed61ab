"""One ingest budget for the whole daemon (ingest/budget.py): socket and HTTPS clients
together never have more than it (plus one read) admitted and uncommitted, a client
that hangs up mid-body leaves no work behind, and clients that never read their
answers hold none of it. Asserted on the daemon's own accounting (/metrics)."""

from __future__ import annotations

import asyncio
import json
import socket
import sqlite3
from typing import Any

import aiohttp
from conftest import eventually, free_port
from prometheus_client.parser import text_string_to_metric_families
from test_remote import TRAINER, tls  # noqa: F401 - the fixture

from runhook.core import constants

BUDGET = 1 << 20  # ingest_budget_mib = 1

CONFIG = """ingest_budget_mib = 1

[secrets]
TRAINER = {{ file = "@DIR@/trainer.token" }}

[ingest]
listen = "127.0.0.1:{port}"
tls_cert = "@DIR@/tls.crt"
tls_key = "@DIR@/tls.key"

[ingest.tokens.trainers]
secret = "TRAINER"
scopes = ["project:acme/*"]

[[automations]]
name = "record"
scope = "project:acme/vision"
event = {{ kind = "CREATE_ARTIFACT" }}
action = {{ kind = "none" }}
cooldown = "0"
"""


def block(start: int, count: int) -> bytes:
    return b"".join(json.dumps({"type": "artifact.created", "entity": "acme", "project": "vision",
                                "collection": "ds", "version": n}).encode() + b"\n"
                    for n in range(start, start + count))


async def scrape(daemon: Any) -> dict[str, float]:
    """The unlabelled samples of /metrics, and "received": events received, all types."""
    async with aiohttp.ClientSession() as http, http.get(daemon.http + "/metrics") as r:
        text = await r.text()
    samples = [s for family in text_string_to_metric_families(text) for s in family.samples]
    return {s.name: s.value for s in samples if not s.labels} | {
        "received": sum(s.value for s in samples if s.name == "runhook_events_received_total")}


def executions(daemon: Any) -> int:
    db = sqlite3.connect(daemon.database)
    try:
        return int(db.execute("SELECT count(*) FROM executions").fetchone()[0])
    finally:
        db.close()


async def hang_up_mid_body(port: int, context: Any, body: bytes) -> None:
    """POST a body announced whole, send the first part of it, and hang up."""
    _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
    writer.write(f"POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer "
                 f"{TRAINER}\r\nContent-Type: application/x-ndjson\r\n"
                 f"Content-Length: {len(body)}\r\n\r\n".encode())
    writer.write(body[:len(body) * 2 // 3])
    await writer.drain()
    writer.transport.abort()


async def test_every_connection_of_both_transports_shares_one_budget(start_daemon, tls):  # noqa: F811
    """Twelve socket clients send 1.2 MB each and never read (their answers fit in
    the kernel's buffers, so all of it is read); six HTTPS clients send two thirds
    of 2.4 MB and hang up. 24 MB against a 1 MiB budget: readers waited,
    the most ever in flight is the budget plus one read, and once the commits are
    done nothing is in flight, though the socket clients are still connected and
    still have not read a byte: another client's event is answered meanwhile."""
    port = free_port()
    daemon = await start_daemon(CONFIG.format(port=port))
    loop = asyncio.get_running_loop()
    silent: list[socket.socket] = []
    senders = []
    for i in range(12):
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        client.setblocking(False)
        await loop.sock_connect(client, daemon.socket)
        silent.append(client)
        senders.append(asyncio.ensure_future(loop.sock_sendall(client, block(i * 10_000, 10_000))))
    try:
        await asyncio.gather(*(hang_up_mid_body(port, tls, block(100_000 + i * 20_000, 20_000))
                               for i in range(6)))
        # Every socket client's lines are read (its sends complete) and committed,
        # the hung-up bodies' admitted lines too: nothing is left in flight.
        await asyncio.wait_for(asyncio.gather(*senders), 60)
        samples = await eventually(lambda: scrape(daemon),
                                   lambda s: s["runhook_ingest_in_flight_bytes"] == 0, timeout=60)
        assert samples["runhook_ingest_budget_bytes"] == BUDGET
        assert samples["runhook_ingest_budget_waits_total"] > 0
        assert BUDGET <= samples["runhook_ingest_in_flight_peak_bytes"] \
            <= BUDGET + constants.READ_CHUNK
        # Still connected, answers unread: they hold none of the budget, so another
        # client's event goes through.
        reader, writer = await asyncio.open_unix_connection(daemon.socket)
        writer.write(block(999_999, 1))
        assert await asyncio.wait_for(reader.readline(), 30) == b'{"ok":true}\n'
        writer.close()
        # Every event read from a client was committed: an execution each, no more.
        after = await scrape(daemon)
        assert after["runhook_ingest_in_flight_bytes"] == 0
        assert executions(daemon) == after["received"]
        assert 12 * 10_000 + 1 <= after["received"] < 12 * 10_000 + 1 + 6 * 20_000
    finally:
        for client in silent:
            client.close()


async def test_hang_ups_mid_flood_leave_no_work_growing(start_daemon, tls):  # noqa: F811
    """Twenty rounds of 1.6 MB sent and hung up (the issue's flood, which grew by
    100 MB/s): the admitted work is bounded by the budget throughout, and once the
    last commit is done nothing is in flight and nothing more is received: every
    event admitted was committed, none after."""
    port = free_port()
    daemon = await start_daemon(CONFIG.format(port=port))
    for round_ in range(20):
        await asyncio.gather(*(hang_up_mid_body(port, tls, block(round_ * 100_000 + i * 20_000,
                                                                 20_000)) for i in range(3)))
    samples = await eventually(lambda: scrape(daemon),
                               lambda s: s["runhook_ingest_in_flight_bytes"] == 0, timeout=60)
    assert samples["runhook_ingest_in_flight_peak_bytes"] <= BUDGET + constants.READ_CHUNK
    assert executions(daemon) == samples["received"]
    assert (await scrape(daemon))["received"] == samples["received"]
