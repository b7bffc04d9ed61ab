"""Reload restarts an integration whose definition changed: after SIGHUP every
attempt, a retry scheduled before the reload included, goes to the new URL with
the new limits, and none to the old one."""

from __future__ import annotations

import asyncio
import json
import signal

from aiohttp import web
from conftest import eventually, execution, settled
from test_delivery import automation, integration
from test_reload import answered_reload

ALIAS = {"type": "artifact.alias_added", "entity": "acme", "registry": "model",
         "collection": "resnet", "alias": "production"}


async def test_reload_sends_to_the_changed_url_with_the_changed_limits(start_daemon, receiver,
                                                                        serve):
    """`old` (the receiver fixture) answers the first attempt 503, so a retry is
    scheduled ~5 s later. The reload moves the integration to `new` and raises
    max_in_flight from 1 to 2: `new` holds each request until two are in flight
    at once, which only a restarted actor (two senders, a two-connection pool)
    can do; then the retry and two fresh executions all arrive there."""
    held: list[int] = []  # versions `new` holds (none is answered before two are)
    two_at_once = asyncio.Event()
    versions: list[int] = []

    async def hold_until_two(request: web.Request) -> web.Response:
        version = json.loads(await request.read())["v"]
        versions.append(version)
        held.append(version)
        if len(held) >= 2:
            two_at_once.set()
        await two_at_once.wait()
        return web.Response(text="ok")

    new_url = await serve(hold_until_two)
    receiver.responses.append((503, "busy", {}))
    body = automation("deploy", "ci", '{"v": "${artifact_version_index}"}')
    daemon = await start_daemon(integration("ci", receiver.url, "max_in_flight = 1") + body)
    async with daemon.client() as client:
        assert await client.send({**ALIAS, "version": 1}) == {"ok": True}
    retried = (await receiver.next(timeout=10)).headers["webhook-id"]
    await eventually(lambda: execution(daemon, retried),
                     lambda a: a["execution"]["attempts"] == 1 and a["attempts"])

    text = daemon.config.read_text()
    daemon.config.write_text(text.replace(receiver.url, new_url)
                             .replace("max_in_flight = 1", "max_in_flight = 2"))
    daemon.process.send_signal(signal.SIGHUP)
    assert "STATUS=1 automation, 1 integration" in await answered_reload(daemon)

    async with daemon.client() as client:
        assert [await client.send({**ALIAS, "version": v}) for v in (2, 3)] == [{"ok": True}] * 2
    await asyncio.wait_for(two_at_once.wait(), 5)  # two at once: the new limit holds
    async with daemon.client() as client:
        rows = await eventually(
            lambda: client.request({"type": "query.history"}),
            lambda a: len(a["executions"]) == 3
            and all(r["state"] != "PENDING" for r in a["executions"]), timeout=10)
    assert {r["state"] for r in rows["executions"]} == {"FINISHED"}
    # The retry of the execution the old URL refused went to the new one.
    retry = await settled(daemon, retried)
    assert [a["status"] for a in retry["attempts"]] == [503, 200]
    assert sorted(versions) == [1, 2, 3]  # each once, all at the new URL
    assert len(receiver.requests) == 1  # the old URL saw only the attempt before the reload
