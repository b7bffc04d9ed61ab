"""The watchdog vouches for the writer: WATCHDOG=1 stops while the database writer
cannot commit, and comes back once it can, so systemd restarts a wedged daemon."""

from __future__ import annotations

import asyncio
import sqlite3

from conftest import Daemon
from test_socket import RECORD

# systemd's WatchdogSec, as the daemon reads it; it pings every half of it.
WATCHDOG_USEC = 400_000
INTERVAL = WATCHDOG_USEC / 2_000_000


async def pings(daemon: Daemon, seconds: float) -> list[float]:
    """When each WATCHDOG=1 arrived in the next `seconds` (loop time)."""
    assert daemon.notify is not None
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    seen = []
    while (left := deadline - loop.time()) > 0:
        try:
            message = (await asyncio.wait_for(loop.sock_recv(daemon.notify, 4096), left)).decode()
        except TimeoutError:
            break
        daemon.notifications.append(message)
        if "WATCHDOG=1" in message.split("\n"):
            seen.append(loop.time())
    return seen


async def test_watchdog_goes_silent_while_the_writer_cannot_commit(start_daemon):
    daemon = await start_daemon(RECORD, env={"WATCHDOG_USEC": str(WATCHDOG_USEC)})
    await daemon.notified("WATCHDOG=1", timeout=5)
    await daemon.notified("WATCHDOG=1", timeout=5)

    # Another connection takes the write lock: the writer's heartbeat transaction
    # waits in BEGIN IMMEDIATE (busy_timeout is 5 s, so it is stalled, not failed).
    holder = sqlite3.connect(daemon.database, isolation_level=None, timeout=5)
    loop = asyncio.get_running_loop()
    try:
        holder.execute("BEGIN IMMEDIATE")
        locked_at = loop.time()
        # A heartbeat that committed just before the lock may still be announced
        # within one interval; after that, six intervals must pass in silence.
        late = await pings(daemon, INTERVAL + 6 * INTERVAL)
        assert [t for t in late if t - locked_at > INTERVAL] == [], \
            f"WATCHDOG=1 while the writer was stalled, {[round(t - locked_at, 2) for t in late]}"
    finally:
        holder.execute("ROLLBACK")
        holder.close()

    await daemon.notified("WATCHDOG=1", timeout=3)  # the writer commits again: pings resume
    await daemon.notified("WATCHDOG=1", timeout=3)
    assert "watchdog: the database writer made no progress for 0.2s" in daemon.log_text()
