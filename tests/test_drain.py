"""SIGTERM's delivery drain has a bound: an endpoint that never answers cannot hold the
daemon past `server.drain_timeout`, and what it held stays PENDING for the next start."""

from __future__ import annotations

import asyncio
import signal
import sqlite3

from aiohttp import web
from conftest import eventually, webhook_config


async def test_the_drain_times_out_and_leaves_the_execution_pending(start_daemon, serve):
    release = asyncio.Event()
    first = asyncio.Event()
    arrived: list[str] = []

    async def hang_once(request: web.Request) -> web.Response:
        arrived.append(request.headers["webhook-id"])
        if len(arrived) == 1:
            first.set()
            await release.wait()  # the first request is never answered while it matters
        return web.Response(text="ok")

    # The attempt's own timeout (10 min) is far past the drain's and past conftest's
    # 30 s wait for the exit: only the drain's bound can end this daemon.
    config = ('drain_timeout = "1s"\n'
              + webhook_config(await serve(hang_once), extra="timeout = 600",
                               event='{ kind = "ADD_ARTIFACT_ALIAS" }'))
    try:
        daemon = await start_daemon(config)
        async with daemon.client() as client:
            await client.send({"type": "artifact.alias_added", "entity": "acme",
                               "registry": "model", "collection": "c", "version": 1,
                               "alias": "a"})
        await asyncio.wait_for(first.wait(), 20)
        assert await daemon.stop(signal.SIGTERM) == 0  # conftest waits 30 s at most
        assert not release.is_set()  # the endpoint never answered

        with sqlite3.connect(f"file:{daemon.database}?mode=ro", uri=True) as db:
            [(execution_id, state, attempts)] = db.execute(
                "SELECT id, state, attempts FROM executions").fetchall()
            recorded = db.execute("SELECT count(*) FROM attempts").fetchone()[0]
        assert (execution_id, state, attempts, recorded) == (arrived[0], "PENDING", 0, 0)
        assert "stopping: letting deliveries in flight finish" in daemon.log_text()

        # The next start sends it again, with the same webhook-id (receivers
        # deduplicate on it), and this time it is answered.
        daemon = await start_daemon(config=daemon.config)
        async with daemon.client() as client:
            answer = await eventually(
                lambda: client.request({"type": "query.execution", "id": execution_id}),
                lambda a: a["execution"]["state"] != "PENDING")
        assert answer["execution"]["state"] == "FINISHED"
        assert [a["status"] for a in answer["attempts"]] == [200]
        assert arrived == [execution_id, execution_id]
    finally:
        release.set()
