"""Housekeeping against a real daemon and its SQLite file: settled history older than
history_ttl is purged (PENDING never), silent runs are evicted, idempotency ids past
24 h are forgotten, and a round purges until it has caught up."""

from __future__ import annotations

import asyncio
import re
import sqlite3
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from aiohttp import web
from conftest import eventually

from runhook.app.housekeeping import Purged, purge
from runhook.config.model import ConfigError, decode
from runhook.config.settings import build
from runhook.core import constants
from runhook.store.database import Store, Write
from runhook.store.statements import INSERT_EVENT_ID, INSERT_EXECUTION

# Server keys land in the [server] table conftest.write_config opens.
QUICK = 'purge_interval = "1s"\n'
DAY = 24 * 3600


def rows(database: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Read the daemon's database from outside, as another process would."""
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
        return db.execute(sql, params).fetchall()


async def read(database: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    return await asyncio.to_thread(rows, database, sql, params)


def add_event_ids(database: Path, ids: list[tuple[str, float]]) -> None:
    """Idempotency ids as if accepted at the given times, in one transaction."""
    with sqlite3.connect(database, timeout=30) as db:
        db.executemany(INSERT_EVENT_ID, [(i, "*", at) for i, at in ids])


def alias(collection: str, version: int = 1) -> dict[str, Any]:
    return {"type": "artifact.alias_added", "entity": "acme", "registry": "model",
            "collection": collection, "version": version, "alias": "production"}


def webhook(name: str, url: str) -> str:
    return f"""
[integrations.{name}]
kind = "webhook"
url = "{url}"
allow_http = true
allow_private = true
"""


def on_alias(name: str, collection: str, action: str) -> str:
    return f"""
[[automations]]
name = "{name}"
scope = "registry:acme/model"
event = {{ kind = "ADD_ARTIFACT_ALIAS", collection = "^{collection}$" }}
action = {action}
"""


async def test_history_purge_deletes_settled_executions_and_never_pending(start_daemon, serve):
    held: list[str] = []

    async def unavailable(request: web.Request) -> web.Response:
        held.append(request.headers["webhook-id"])
        return web.Response(status=503)  # retried for hours: PENDING all along

    async def gone(request: web.Request) -> web.Response:
        return web.Response(status=404)  # FAILED at once

    config = (QUICK + 'history_ttl = "1s"\n'
              + webhook("hold", await serve(unavailable)) + webhook("reject", await serve(gone))
              + on_alias("held", "held", '{ integration = "hold" }')
              + on_alias("rejected", "rejected", '{ integration = "reject" }')
              + on_alias("recorded", "recorded", '{ kind = "none" }'))
    daemon = await start_daemon(config)
    async with daemon.client() as client:
        await client.send(alias("held"))
        history = await eventually(lambda: client.request({"type": "query.history"}),
                                   lambda a: a["executions"] and a["executions"][0]["attempts"])
        [pending] = history["executions"]
        assert pending["state"] == "PENDING" and held == [pending["id"]]
        # Created after the PENDING one: once these are purged, a round's cutoff
        # has passed the PENDING one's creation too.
        await client.send(alias("rejected"))
        await client.send(alias("recorded"))
        settled = await eventually(
            lambda: client.request({"type": "query.history", "state": "FAILED"}),
            lambda a: len(a["executions"]) == 1)
    failed = settled["executions"][0]["id"]
    assert await read(daemon.database, "SELECT count(*) FROM attempts WHERE execution_id = ?",
                      (failed,)) == [(1,)]

    left = await eventually(
        lambda: read(daemon.database, "SELECT id, state FROM executions"),
        lambda found: len(found) == 1)
    assert left == [(pending["id"], "PENDING")]
    # The FAILED one's attempt went with it; the PENDING one keeps its own.
    assert await read(daemon.database, "SELECT DISTINCT execution_id FROM attempts") \
        == [(pending["id"],)]
    # The log line follows the delete's commit: waited for, not assumed.
    await eventually(log_of(daemon), lambda text: "settled executions older than 1s" in text)


async def test_runs_silent_for_run_ttl_are_evicted(start_daemon):
    config = (QUICK + 'run_ttl = "1s"\n' + """
[[automations]]
name = "diverged"
scope = "project:acme/vision"
event = { kind = "RUN_METRIC_THRESHOLD", metric = "loss", cmp = ">", threshold = 5 }
action = { kind = "none" }
""")
    daemon = await start_daemon(config)
    async with daemon.client() as client:
        await client.send({"type": "run.metrics", "entity": "acme", "project": "vision",
                           "run_id": "r1", "run_name": "prod-1", "user": "ana",
                           "values": {"loss": 9.0}})
        # The firing committed its crossing flag with the execution, before the ack.
        assert await read(daemon.database, "SELECT automation FROM trigger_state "
                          "WHERE run_id = 'r1'") == [("diverged",)]

        async def tracked() -> int:
            answer = await client.request({"type": "query.status"})
            return int(answer["status"]["tracked_runs"])

        await eventually(tracked, lambda n: n == 0)
    # Forgotten in memory first; the rows go in the checkpoint's commit just after.
    await eventually(lambda: read(daemon.database, " UNION ALL ".join(
        f"SELECT '{table}', count(*) FROM {table} WHERE run_id = 'r1'"
        for table in ("runs", "windows", "trigger_state"))),
        lambda found: found == [("runs", 0), ("windows", 0), ("trigger_state", 0)])
    assert "scope project:acme/vision: evicted 1 runs" in daemon.log_text()


async def test_a_round_forgets_every_id_past_24h_in_batches_until_caught_up(start_daemon):
    """12,000 expired ids: more than two batches. Rounds delete them all (each log
    line counts one round), and ids younger than 24 h stay."""
    daemon = await start_daemon(QUICK + """
[[automations]]
name = "record"
scope = "project:acme/vision"
event = { kind = "CREATE_ARTIFACT" }
action = { kind = "none" }
""")
    async with daemon.client() as client:
        await client.send({"type": "artifact.created", "entity": "acme", "project": "vision",
                           "collection": "ds", "version": 1, "id": "sent-just-now"})
    now = time.time()
    expired = 2 * constants.PURGE_BATCH + 2000
    await asyncio.to_thread(add_event_ids, daemon.database,
                            [(f"old-{n}", now - DAY - 3600) for n in range(expired)]
                            + [("23h-old", now - DAY + 3600)])

    await eventually(lambda: read(daemon.database, "SELECT count(*) FROM event_ids"),
                     lambda found: found == [(2,)])
    assert sorted(await read(daemon.database, "SELECT id FROM event_ids")) \
        == [("23h-old",), ("sent-just-now",)]
    # Logged after the commits (so waited for); a round that began while the ids were
    # being added may count part of them and the next round the rest.
    await eventually(log_of(daemon),
                     lambda text: sum(map(int, re.findall(
                         r"forgot (\d+) idempotency ids older than 24h", text))) == expired)


async def test_purge_repeats_batches_until_one_deletes_fewer(tmp_path):
    """Exactly two batches' worth: a batch that deletes a whole batch is followed
    by another, which deletes none and ends the round."""
    store = Store(tmp_path / "p.db")
    await store.open()
    try:
        async with anyio.create_task_group() as tg:
            await tg.start(store.run)
            now = time.time()
            old = now - 40 * DAY
            executions = [(f"e{n}", "a", "project:acme/vision", "CREATE_ARTIFACT",
                           "artifact.created", None, "none", None,
                           "PENDING" if n < 3 else "FINISHED", None, "{}", None, old, old,
                           None) for n in range(2 * constants.PURGE_BATCH + 3)]
            done = anyio.Event()
            await store.submit(Write([
                (INSERT_EXECUTION, executions),
                (INSERT_EVENT_ID, [(f"i{n}", "*", now - 2 * DAY) for n in range(7)]),
            ], lambda error: done.set()))
            await done.wait()
            purged = await purge(store, now, 30 * DAY)
            store.finish()
        assert purged == Purged(event_ids=7, executions=2 * constants.PURGE_BATCH)
        left = rows(tmp_path / "p.db", "SELECT id, state FROM executions ORDER BY id")
        assert left == [("e0", "PENDING"), ("e1", "PENDING"), ("e2", "PENDING")]
    finally:
        await store.close()


@pytest.mark.parametrize("server, expected", [
    ('purge_interval = "0"', "server.purge_interval: expected a duration above 0"),
    ('purge_interval = "0s"', "server.purge_interval: expected a duration above 0"),
    ('purge_interval = "often"', "server.purge_interval: expected a duration like"),
    ('drain_timeout = "-1s"', "server.drain_timeout: expected a duration like"),
])
def test_housekeeping_settings_name_their_path(server, expected):
    with pytest.raises(ConfigError) as caught:
        build(decode(f"[server]\n{server}\n"))
    assert caught.value.problems[0].startswith(expected), caught.value.problems


def test_housekeeping_settings_default_to_production_values():
    settings = build(decode(""))
    assert (settings.purge_interval, settings.drain_timeout) == (600.0, 20.0)
    settings = build(decode('[server]\npurge_interval = "250ms"\ndrain_timeout = "0"\n'))
    assert (settings.purge_interval, settings.drain_timeout) == (0.25, 0.0)


def log_of(daemon: Any) -> Callable[[], Awaitable[str]]:
    """The daemon's log so far, as `eventually` probes it."""
    async def text() -> str:
        return str(daemon.log_text())
    return text
