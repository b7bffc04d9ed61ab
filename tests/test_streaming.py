"""The socket under hostile or relentless clients: answers flow while a client
sends, a stop answers every line it read, and no bytes cost the answers of others."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import sqlite3
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_socket import GOOD, RECORD, exchange, line

# Lines that once took a whole read's answers with them.
BAD_UTF8 = b'{"type": "artifact.created", "entity": "acme", "project": "vision", ' \
    b'"collection": "\xff\xfe", "version": 1}'
DEEP = b'{"type": "artifact.created", "entity": "acme", "project": "vision", ' \
    b'"collection": "c", "version": 1, "metadata": {"a": ' + b"[" * 5000 + b"]" * 5000 + b"}}"


def rss_mb(pid: int) -> float:
    for row in Path(f"/proc/{pid}/status").read_text().splitlines():
        if row.startswith("VmRSS:"):
            return int(row.split()[1]) / 1024
    raise AssertionError("no VmRSS")


async def test_one_bad_line_in_a_pipeline_costs_only_its_own_answer(start_daemon):
    daemon = await start_daemon(RECORD)
    lines = [line({**GOOD, "version": i}) for i in range(600)]
    lines.insert(300, BAD_UTF8 + b"\n")
    lines.insert(450, DEEP + b"\n")
    answers = await exchange(daemon.socket, b"".join(lines), len(lines))
    assert answers[300] == {"ok": False, "error": "line 301: not valid UTF-8"}
    assert answers[450] == {"ok": False, "error": "line 451: nested too deeply"}
    assert [a for i, a in enumerate(answers) if i not in (300, 450)] == [{"ok": True}] * 600


async def test_answers_flow_while_the_client_keeps_sending(start_daemon):
    """The client never pauses: it stops sending only once it has read 2,000 answers.
    A daemon that answered only when the client paused would never get there."""
    daemon = await start_daemon(RECORD)
    reader, writer = await asyncio.open_unix_connection(daemon.socket)
    enough = asyncio.Event()
    block = b"".join(line({**GOOD, "version": i}) for i in range(200))
    sent = 0

    async def send() -> None:
        nonlocal sent
        while not enough.is_set():
            writer.write(block)
            await writer.drain()
            sent += 200
            assert sent < 400_000, "no answers while sending"

    sender = asyncio.create_task(send())
    answered = 0
    while answered < 2000:
        got = await asyncio.wait_for(reader.readline(), 30)
        assert got == b'{"ok":true}\n'
        answered += 1
    enough.set()
    await sender
    assert not sender.exception()
    writer.write_eof()
    while await asyncio.wait_for(reader.readline(), 30):
        answered += 1
    assert answered == sent  # and the rest, once it stopped
    writer.close()


async def test_sigterm_answers_every_line_it_committed(start_daemon):
    """A client streaming without pause when SIGTERM comes: every event the daemon
    committed was answered ok, and every ok was committed. A line cut mid-way
    is neither. (A plain socket: asyncio's reader drops what it buffered once
    the writer side broke.)"""
    daemon = await start_daemon(RECORD)
    loop = asyncio.get_running_loop()
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.setblocking(False)
    await loop.sock_connect(client, daemon.socket)
    data = b"".join(line({**GOOD, "version": i}) for i in range(500))

    async def send() -> None:
        try:
            while True:
                await loop.sock_sendall(client, data)
        except (ConnectionError, OSError):
            pass  # the daemon closed the connection

    sender = asyncio.create_task(send())
    received = b""
    stopping = None
    while True:
        try:
            chunk = await asyncio.wait_for(loop.sock_recv(client, 65536), 30)
        except ConnectionResetError:
            break  # closed with our unread lines in its buffer: every answer came first
        if not chunk:
            break
        received += chunk
        if stopping is None and received.count(b"\n") >= 3000:
            stopping = asyncio.create_task(daemon.stop(signal.SIGTERM))
    assert stopping is not None
    assert await stopping == 0
    await sender
    client.close()
    answers = received.splitlines()
    assert set(answers) == {b'{"ok":true}'} and received.endswith(b"\n")
    db = sqlite3.connect(daemon.database)
    assert db.execute("SELECT count(*) FROM executions").fetchone()[0] == len(answers)
    assert "feed_data after feed_eof" not in daemon.log_text()


async def test_an_over_limit_last_line_without_newline_is_answered(start_daemon):
    daemon = await start_daemon(RECORD)
    reader, writer = await asyncio.open_unix_connection(daemon.socket)
    writer.write(line(GOOD) + b"x" * ((1 << 20) + 10))
    writer.write_eof()
    answers = [json.loads(a) for a in (await asyncio.wait_for(reader.read(), 30)).splitlines()]
    assert answers == [{"ok": True}, {"ok": False, "error":
                                      "line 2: line is over 1048576 bytes (1 MiB); refused"}]
    writer.close()


async def test_a_long_line_in_tiny_writes_is_one_request(start_daemon):
    daemon = await start_daemon(RECORD)
    big = line({**GOOD, "metadata": {"pad": "p" * ((1 << 20) - 200)}})
    assert len(big) < 1 << 20
    reader, writer = await asyncio.open_unix_connection(daemon.socket)
    for start in range(0, len(big), 64):
        writer.write(big[start:start + 64])
        await writer.drain()
    assert await asyncio.wait_for(reader.readline(), 60) == b'{"ok":true}\n'
    writer.close()


async def test_queries_from_a_client_that_never_reads_are_not_all_built(start_daemon):
    """200 histories of 5,000 rows each (about 2 MB apiece), never read: the daemon
    builds the next answer only as the client takes the previous one, so its memory
    stays near its baseline. A probe on another connection shares the queries'
    database connection, so it is answered only after whatever they ran."""
    daemon = await start_daemon(RECORD)
    rows = b"".join(line({**GOOD, "version": i, "metadata": {"pad": "p" * 200}})
                    for i in range(5000))
    assert await exchange(daemon.socket, rows, 5000) == [{"ok": True}] * 5000
    baseline = rss_mb(daemon.process.pid)
    _, writer = await asyncio.open_unix_connection(daemon.socket)
    writer.write(line({"type": "query.history", "limit": 10_000}) * 200)
    await writer.drain()
    async with daemon.client() as client:
        probe = await client.request({"type": "query.history", "limit": 1})
    assert probe["ok"]
    grown = rss_mb(daemon.process.pid) - baseline
    assert grown < 150, f"RSS grew {grown:.0f} MB for answers nobody reads"
    writer.close()


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(segments=st.lists(st.one_of(
    st.binary(max_size=80).map(lambda b: b.replace(b"\n", b"")),
    st.sampled_from([line(GOOD)[:-1], BAD_UTF8, DEEP[:200], DEEP, b"", b" \t", b"{}", b"\r"]),
), max_size=25), newline_at_end=st.booleans())
def check_one_answer_per_line(path: str, segments: list[bytes], newline_at_end: bool) -> None:
    data = b"\n".join(segments) + (b"\n" if newline_at_end and segments else b"")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(30)
        client.connect(path)
        client.sendall(data)
        client.shutdown(socket.SHUT_WR)
        received = b""
        while chunk := client.recv(65536):
            received += chunk
    answers = [json.loads(a) for a in received.splitlines()]
    parts = data.split(b"\n")
    if parts and parts[-1] == b"":
        parts.pop()
    expected = [n for n, part in enumerate(parts, 1) if part.strip()]
    assert len(answers) == len(expected), (data, answers)
    for n, answer in zip(expected, answers, strict=True):
        assert answer["ok"] or answer["error"].startswith(f"line {n}: "), (n, answer)


async def test_any_bytes_get_one_answer_per_line_in_order(start_daemon):
    daemon = await start_daemon(RECORD)
    await asyncio.to_thread(check_one_answer_per_line, daemon.socket)
