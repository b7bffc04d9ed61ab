"""The client library: waiting for a daemon that is not up yet, and refusals."""

from __future__ import annotations

import asyncio

import pytest
from test_socket import GOOD, RECORD

from runhook.client import AsyncClient, Client, RunhookError


async def test_sync_client_waits_for_the_daemon(start_daemon, short_dir):
    path = f"{short_dir}/ev.sock"
    loop = asyncio.get_running_loop()
    refused_once = asyncio.Event()

    def training_script() -> dict:
        with pytest.raises(FileNotFoundError):
            Client(path)  # no daemon yet: without `wait` this fails at once
        loop.call_soon_threadsafe(refused_once.set)
        with Client(path, wait=60) as client:  # and with it, it waits
            return client.send(GOOD)

    script = asyncio.create_task(asyncio.to_thread(training_script))
    await refused_once.wait()  # the daemon starts only after a connection failed
    daemon = await start_daemon(RECORD)
    assert daemon.socket == path
    assert await asyncio.wait_for(script, 60) == {"ok": True}


async def test_async_client_waits_and_reports_refusals(start_daemon, short_dir):
    async def script() -> None:
        async with AsyncClient(f"{short_dir}/ev.sock", wait=60) as client:
            assert await client.send(GOOD) == {"ok": True}
            with pytest.raises(RunhookError, match="line 2: field `version`"):
                await client.send({**GOOD, "version": "two"})

    running = asyncio.create_task(script())
    await start_daemon(RECORD)
    await asyncio.wait_for(running, 60)


def test_no_wait_fails_at_once(short_dir):
    with pytest.raises(FileNotFoundError):
        Client(f"{short_dir}/none.sock")
