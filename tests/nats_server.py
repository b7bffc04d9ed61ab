"""One `nats-server` on loopback with a configuration of the test's own (TLS, accounts,
users), for tests/test_cluster_security.py: tests/nats_cluster.py's servers are
plain and open. Ready when its log says so (a client could not tell: it may be
refused by the very configuration under test)."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
from nats_cluster import free_port, nats_server

READY_TIMEOUT_S = 30.0


@contextlib.asynccontextmanager
async def serving(directory: Path, body: str, *, trace: bool = False
                  ) -> AsyncIterator[int]:
    """Its client port, while it runs: JetStream on, `body` (with @PORT@ in it
    replaced) as the rest of its configuration; its log is directory/nats.log."""
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = directory / "nats.conf"
    config.write_text(f'listen: "127.0.0.1:{port}"\n'
                      f'jetstream {{ store_dir: "{directory / "js"}" }}\n'
                      f"{body.replace('@PORT@', str(port))}\n")
    log = directory / "nats.log"
    process = await anyio.open_process(
        [nats_server(), "-c", str(config), "-l", str(log), *(["-V"] if trace else [])])
    try:
        with anyio.fail_after(READY_TIMEOUT_S):
            while "Server is ready" not in (log.read_text() if log.exists() else ""):
                if process.returncode is not None:
                    raise RuntimeError(f"nats-server exited: {log.read_text()[-2000:]}")
                await anyio.sleep(0.05)
        yield port
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        with anyio.move_on_after(10):
            await process.wait()
        if process.returncode is None:
            process.kill()
            await process.wait()
