"""Graceful stop with deliveries in flight, /metrics, the status page, JSON logs."""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3

import aiohttp
from aiohttp import web
from conftest import eventually, webhook_config
from prometheus_client.parser import text_string_to_metric_families
from test_socket import GOOD, RECORD

from runhook.core.metrics import activity_line


async def test_sigterm_with_deliveries_in_flight_loses_none(start_daemon, serve):
    release = asyncio.Event()
    two_held = asyncio.Event()
    arrived: list[str] = []
    answered: set[str] = set()

    async def hook(request: web.Request) -> web.Response:
        arrived.append(request.headers["webhook-id"])
        if len(arrived) == 2:
            two_held.set()
        await release.wait()
        answered.add(request.headers["webhook-id"])
        return web.Response(text="ok")

    config = webhook_config(await serve(hook), extra="max_in_flight = 2",
                            event='{ kind = "ADD_ARTIFACT_ALIAS" }')
    daemon = await start_daemon(config)
    async with daemon.client() as client:
        for v in range(6):
            await client.send({"type": "artifact.alias_added", "entity": "acme",
                               "registry": "model", "collection": "c", "version": v,
                               "alias": "a"})
    await two_held.wait()  # max_in_flight = 2: both slots are taken and held
    in_flight = set(arrived)
    daemon.process.send_signal(signal.SIGTERM)
    await daemon.notified("STOPPING=1")

    async def log() -> str:
        return daemon.log_text()

    # Answer the two only once the delivery drain has begun (no new attempt starts
    # from then on): answered any earlier, they would prove nothing about the drain.
    await eventually(log, lambda text: "letting deliveries in flight finish" in text)
    release.set()
    assert await asyncio.wait_for(daemon.process.wait(), 30) == 0

    # Read from the database the exit left: the two in flight finished (their answers
    # recorded before the exit), the four queued wait, PENDING, never attempted.
    with sqlite3.connect(daemon.database) as db:
        left = {row[0]: row[1:] for row in db.execute(
            "SELECT id, state, attempts FROM executions")}
    assert {i: left[i] for i in in_flight} == {i: ("FINISHED", 1) for i in in_flight}
    assert sorted(v for i, v in left.items() if i not in in_flight) == [("PENDING", 0)] * 4

    # After a restart the four go out; none is lost and none is sent twice.
    daemon = await start_daemon(config=daemon.config)
    async with daemon.client() as client:
        rows = await eventually(
            lambda: client.request({"type": "query.history"}),
            lambda a: sum(r["state"] == "FINISHED" for r in a["executions"]) == 6)
    assert {r["id"]: r["attempts"] for r in rows["executions"]} == dict.fromkeys(left, 1)
    assert sorted(arrived) == sorted(left) and answered == set(left)


async def test_metrics_match_what_was_sent(start_daemon, receiver):
    body = webhook_config(receiver.url, event='{ kind = "ADD_ARTIFACT_ALIAS" }') + RECORD
    daemon = await start_daemon(body)
    alias = {"type": "artifact.alias_added", "entity": "acme", "registry": "model",
             "collection": "c", "version": 1, "alias": "a"}
    receiver.responses.append((500, "no", {}))
    async with daemon.client() as client:
        for _ in range(3):
            await client.send(GOOD)
        await client.send(alias)
        await client.request(b'{"type": "nonsense"}')
        await client.request(b"{broken")
    await receiver.next()
    await receiver.next()  # the first retry after the 500, 5 s (±20 %) later
    async with aiohttp.ClientSession() as http:
        async def scrape() -> dict:
            async with http.get(daemon.http + "/metrics") as r:
                assert r.headers["Content-Type"].startswith("text/plain")
                return {(s.name, tuple(sorted(s.labels.items()))): s.value
                        for family in text_string_to_metric_families(await r.text())
                        for s in family.samples}
        samples = await eventually(scrape, lambda s: s.get(
            ("runhook_deliveries_total", (("integration", "ci"), ("outcome", "success")))) == 1)
    assert samples[("runhook_events_received_total", (("type", "artifact.created"),))] == 3
    assert samples[("runhook_events_received_total", (("type", "artifact.alias_added"),))] == 1
    assert samples[("runhook_lines_rejected_total", ())] == 2
    assert samples[("runhook_executions_total", (("automation", "record"),
                                                 ("state", "FINISHED")))] == 3
    assert samples[("runhook_executions_total", (("automation", "deploy"),
                                                 ("state", "PENDING")))] == 1
    assert samples[("runhook_executions_total", (("automation", "deploy"),
                                                 ("state", "FINISHED")))] == 1
    assert samples[("runhook_deliveries_total", (("integration", "ci"), ("outcome", "retry")))] == 1
    assert samples[("runhook_delivery_seconds_count", (("integration", "ci"),))] == 2
    assert samples[("runhook_scope_actors", ())] == 2
    assert samples[("runhook_integration_disabled", (("integration", "ci"),))] == 0
    assert ("runhook_queue_depth", (("queue", "writer"),)) in samples
    assert samples[("runhook_db_write_batch_size_count", ())] >= 1


async def test_status_page_shows_automations_and_last_state(start_daemon, receiver):
    receiver.responses.append((404, "nope", {}))
    body = webhook_config(receiver.url, event='{ kind = "ADD_ARTIFACT_ALIAS" }') + RECORD
    daemon = await start_daemon(body)
    async with daemon.client() as client:
        await client.send(GOOD)
        await client.send({"type": "artifact.alias_added", "entity": "acme",
                           "registry": "model", "collection": "c", "version": 1,
                           "alias": "<b>x</b>"})
    await receiver.next()
    async with daemon.console() as http:
        async def page() -> str:
            async with http.get(daemon.http + "/") as r:
                assert r.headers["Content-Type"].startswith("text/html")
                return await r.text()
        def row(html: str, name: str) -> str:
            return html.split(f'href="/automations/{name}">{name}</a>')[1].split("</tr>")[0]
        # The attempt's commit lands a moment after the receiver answered.
        html = await eventually(page, lambda h: 'FAILED">FAILED' in row(h, "deploy"))
    assert '<meta http-equiv="refresh"' in html and "<script" not in html
    rows = {name: row(html, name) for name in ("record", "deploy")}
    assert 'class="s FINISHED">FINISHED' in rows["record"]
    assert 'class="s FAILED">FAILED' in rows["deploy"]
    assert "<b>x</b>" not in html  # event data is escaped


async def test_json_logs_one_line_per_transition_at_debug(start_daemon, receiver):
    daemon = await start_daemon(webhook_config(receiver.url,
                                               event='{ kind = "ADD_ARTIFACT_ALIAS" }'),
                                args=("--log-format", "json", "--log-level", "debug"))
    async with daemon.client() as client:
        await client.send({"type": "artifact.alias_added", "entity": "acme",
                           "registry": "model", "collection": "c", "version": 1, "alias": "a"})
    execution_id = (await receiver.next()).headers["webhook-id"]

    async def lines() -> list[dict]:
        return [json.loads(x) for x in daemon.log_text().splitlines()]
    logged = await eventually(lines, lambda ls: sum(execution_id in x["message"] for x in ls) >= 2)
    mine = [x for x in logged if execution_id in x["message"]]
    assert mine[0]["message"].startswith(f"execution {execution_id} created: deploy")
    assert "attempt 1 FINISHED in" in mine[1]["message"]
    assert all(set(x) >= {"time", "level", "logger", "message"} for x in logged)


async def test_info_log_has_no_line_per_success(start_daemon, receiver):
    """At the default level a delivered execution writes no line of its own (the
    rate would be bounded by logging); its history is in the database."""
    daemon = await start_daemon(webhook_config(receiver.url,
                                               event='{ kind = "ADD_ARTIFACT_ALIAS" }'))
    async with daemon.client() as client:
        await client.send({"type": "artifact.alias_added", "entity": "acme",
                           "registry": "model", "collection": "c", "version": 1, "alias": "a"})
        execution_id = (await receiver.next()).headers["webhook-id"]
        history = await eventually(
            lambda: client.request({"type": "query.history", "limit": 1}),
            lambda answer: answer["executions"][0]["state"] == "FINISHED")
    assert history["executions"][0]["id"] == execution_id
    assert execution_id not in daemon.log_text()


def test_activity_line_counts_the_difference():
    before = {"events": 10, "executions": 4, "success": 3, "retry": 1, "failed": 0}
    after = {"events": 1510, "executions": 104, "success": 100, "retry": 3, "failed": 1}
    assert activity_line(before, after, 60.2) == (
        "last 60s: 1,500 events, 100 executions, 97 delivered, 2 retries scheduled, 1 failed")
    assert activity_line(after, after, 60.0) is None
