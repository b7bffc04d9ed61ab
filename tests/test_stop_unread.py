"""SIGTERM while a client sends events and never reads its answers: the daemon gives
up on that connection after its drain bound and exits 0 (systemd would otherwise
wait out TimeoutStopSec and SIGKILL it). Before ingress owned its connections, the
handler's `finally` awaited room in a full answer queue whose consumer had been
cancelled: "stopped" was logged and the process never exited."""

from __future__ import annotations

import asyncio
import signal
import socket
import sqlite3

from test_socket import GOOD, RECORD, line

# The daemon waits 10 s for open connections to be answered (DRAIN_CONNECTIONS_S),
# then has this long to exit.
EXIT_BOUND_S = 10.0 + 2.0
LINES = 2000
BLOCK = b"".join(line({**GOOD, "version": n}) for n in range(LINES))  # ~220 KB


def committed(db: sqlite3.Connection) -> int:
    return int(db.execute("SELECT count(*) FROM executions").fetchone()[0])


async def test_sigterm_with_a_client_that_never_reads_exits(start_daemon):
    daemon = await start_daemon(RECORD)
    loop = asyncio.get_running_loop()
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # takes few answers
    client.setblocking(False)
    await loop.sock_connect(client, daemon.socket)
    sent = 0

    async def send() -> None:
        nonlocal sent
        try:
            while True:
                await loop.sock_sendall(client, BLOCK)
                sent += len(BLOCK)
        except OSError:
            pass  # the daemon closed the connection

    sender = asyncio.create_task(send())
    try:
        # Await the state: our sends stall with nearly every line sent committed
        # (less what the socket and the daemon's read buffer hold): its answers
        # back up, its 16 answer slots are taken, it reads no more. A slow fsync
        # also stalls our sends, but then 16 chunks (~37k lines) await a commit.
        db = sqlite3.connect(daemon.database)
        try:
            deadline = loop.time() + 10
            while True:
                assert loop.time() < deadline, "the daemon never stopped reading"
                before = sent
                await asyncio.sleep(0.5)
                behind = sent // len(BLOCK) * LINES - committed(db)
                if sent == before and behind < 16_000:
                    break
        finally:
            db.close()
        daemon.process.send_signal(signal.SIGTERM)
        await daemon.notified("STOPPING=1", timeout=5)
        try:
            code = await asyncio.wait_for(daemon.process.wait(), EXIT_BOUND_S)
        except TimeoutError:
            stopped = "INFO runhook: stopped" in daemon.log_text()
            daemon.process.kill()  # its handlers are gone; conftest's stop would see -15
            await daemon.process.wait()
            raise AssertionError(f"no exit {EXIT_BOUND_S:.0f} s after SIGTERM "
                                 f"('stopped' logged: {stopped})") from None
        assert code == 0, daemon.log_text()
    finally:
        sender.cancel()
        client.close()
