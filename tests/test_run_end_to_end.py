"""A run logging a noisy loss through the real daemon, killed -9 halfway and restarted:
the receiver gets exactly the expected notifications, none repeated, none missing."""

from __future__ import annotations

import asyncio
import json
import math
import random
import re
import signal
import sqlite3

from conftest import eventually, webhook_config

WINDOW, THRESHOLD = 5, 11.0
EVENT = (f'{{ kind = "RUN_METRIC_THRESHOLD", metric = "loss", agg = "avg", window = {WINDOW}, '
         f'cmp = ">", threshold = {THRESHOLD}, run_name = "^prod-" }}')
PAYLOAD = ('{"values": "${metric_values}", "run": "${run_name}", "filter": "${metric_filter}", '
           '"status": "${run_status}", "by": "${event_author}"}')


def noisy_loss(steps: int) -> list[float]:
    rng = random.Random(20261126)
    return [round(10 + 2 * math.sin(i / 25) + rng.gauss(0, 0.8), 6) for i in range(steps)]


def expected_windows(series: list[float]) -> list[list[float]]:
    """The windows at which avg(last 5) > 11 becomes true, worked out independently."""
    out, was_true = [], False
    for i in range(WINDOW - 1, len(series)):
        window = series[i - WINDOW + 1:i + 1]
        now_true = sum(window) / WINDOW > THRESHOLD
        if now_true and not was_true:
            out.append(window)
        was_true = now_true
    return out


def step_event(i: int, loss: float) -> dict:
    return {"type": "run.metrics", "entity": "acme", "project": "vision", "run_id": "run-1",
            "run_name": "prod-resnet", "user": "ana", "step": i,
            "values": {"loss": loss, "acc": 0.5}}


async def test_noisy_run_survives_kill_9(start_daemon, receiver):
    series = noisy_loss(1000)
    expected = expected_windows(series)
    assert 5 <= len(expected) <= 60  # the series really crosses, several times

    config = webhook_config(receiver.url, PAYLOAD, scope="project:acme/vision", event=EVENT,
                            extra="").replace('name = "deploy"', 'name = "loss-high"\ncooldown = "0"')
    daemon = await start_daemon(config)
    async with daemon.client() as client:
        for i in range(300):
            assert await client.send(step_event(i, series[i])) == {"ok": True}

    def checkpointed() -> int:
        with sqlite3.connect(daemon.database) as db:
            return db.execute("SELECT count(*) FROM windows").fetchone()[0]
    # Let one checkpoint happen, so the restart restores a checkpoint *and* replays the log.
    await eventually(lambda: asyncio.to_thread(checkpointed), lambda n: n == 1)

    async with daemon.client() as client:
        for i in range(300, 500):
            assert await client.send(step_event(i, series[i])) == {"ok": True}
    assert await daemon.stop(signal.SIGKILL) == -signal.SIGKILL

    daemon = await start_daemon(config=daemon.config)
    async with daemon.client() as client:
        for i in range(500, 1000):
            assert await client.send(step_event(i, series[i])) == {"ok": True}

    async def history() -> list[dict]:
        async with daemon.client() as client:
            return (await client.request({"type": "query.history", "limit": 1000}))["executions"]
    rows = await eventually(history, lambda rows: all(r["state"] == "FINISHED" for r in rows)
                            and len(rows) >= len(expected))

    # Exactly one execution per expected crossing, in order...
    assert [r["context"]["metric_values"] for r in reversed(rows)] == expected
    # ...and each reached the receiver (at least once; receivers dedupe on webhook-id).
    by_id = {}
    for request in receiver.requests:
        by_id[request.headers["webhook-id"]] = json.loads(request.body)
    assert set(by_id) == {r["id"] for r in rows}
    assert sorted(b["values"] for b in by_id.values()) == sorted(expected)
    body = next(iter(by_id.values()))
    assert body["run"] == "prod-resnet" and body["by"] == "ana" and body["status"] == "running"
    assert body["filter"] == "avg(loss) over last 5 > 11"


async def test_run_state_and_cooldown_end_to_end(start_daemon, receiver):
    config = webhook_config(receiver.url, '{"run": "${run_name}", "status": "${run_status}"}',
                            scope="project:acme/vision",
                            event='{ kind = "RUN_STATE", states = ["failed"] }')
    daemon = await start_daemon(config)
    base = {"type": "run.state", "entity": "acme", "project": "vision", "run_name": "r",
            "user": "ana"}
    async with daemon.client() as client:
        for run_id, state in [("a", "running"), ("a", "crashed"), ("a", "failed"),
                              ("b", "killed"), ("c", "failed"), ("c", "running"),
                              ("c", "failed")]:
            await client.send({**base, "run_id": run_id, "state": state})
        history = (await client.request({"type": "query.history"}))["executions"]
    # a: crashed counts as failed (fires), then failed repeats (nothing); b: killed never
    # fires; c: failed fires, running, failed again inside the 24 h cooldown: SKIPPED.
    got = sorted((r["context"]["run_id"], r["context"]["run_status"], r["state"] == "SKIPPED")
                 for r in history)
    assert got == [("a", "crashed", False), ("c", "failed", False), ("c", "failed", True)]
    skipped = [r for r in history if r["state"] == "SKIPPED"]
    assert len(skipped) == 1 and skipped[0]["reason"].startswith("cooldown: fired less than 1d")
    sent = {json.loads((await receiver.next()).body)["run"] for _ in range(2)}
    assert sent == {"r"}


async def test_nan_infinity_and_null_on_the_wire(start_daemon):
    config = """
[[automations]]
name = "high"
scope = "project:acme/vision"
event = { kind = "RUN_METRIC_THRESHOLD", metric = "loss", cmp = ">", threshold = 5 }
action = { kind = "none" }
cooldown = "0"
"""
    daemon = await start_daemon(config)
    base = {"type": "run.metrics", "entity": "acme", "project": "vision", "run_id": "r",
            "run_name": "prod", "user": "ana"}
    # Exactly what Python's json module writes for these floats.
    lines = [json.dumps({**base, "values": {"loss": v}}) for v in
             (float("nan"), 1.0, None, float("inf"), float("-inf"), float("inf"))]
    assert "NaN" in lines[0] and "Infinity" in lines[3] and "-Infinity" in lines[4]
    async with daemon.client() as client:
        answers = [await client.request(line) for line in lines]
        rows = (await client.request({"type": "query.history"}))["executions"]
    assert answers == [{"ok": True}] * 6
    # NaN and null are ignored; 1 is below, +inf crosses, -inf re-arms, +inf crosses again.
    # (JSON has no infinity: the stored window shows it as null.)
    assert [r["context"]["metric_values"] for r in rows] == [[None], [None]]


async def test_a_cooldown_survives_kill_9(start_daemon):
    """docs/guarantees.md: fired flags and cooldown times commit with the execution. Fire once,
    kill -9 at once (the ok means it committed), restart, fall and cross again within
    the hour: SKIPPED for the cooldown, not a second firing."""
    config = """
[[automations]]
name = "loss-high"
scope = "project:acme/vision"
event = { kind = "RUN_METRIC_THRESHOLD", metric = "loss", cmp = ">", threshold = 5 }
action = { kind = "none" }
cooldown = "1h"
"""
    base = {"type": "run.metrics", "entity": "acme", "project": "vision", "run_id": "r1",
            "run_name": "prod-1", "user": "ana"}
    daemon = await start_daemon(config)
    async with daemon.client() as client:
        assert await client.send({**base, "values": {"loss": 10.0}, "id": "m1"}) == {"ok": True}
    assert await daemon.stop(signal.SIGKILL) == -signal.SIGKILL

    daemon = await start_daemon(config=daemon.config)
    async with daemon.client() as client:
        for i, loss in [(2, 1.0), (3, 10.0)]:
            assert await client.send({**base, "values": {"loss": loss}, "id": f"m{i}"}) == \
                {"ok": True}
        rows = (await client.request({"type": "query.history"}))["executions"]
    assert [(r["event_id"], r["state"]) for r in reversed(rows)] == [("m1", "FINISHED"),
                                                                      ("m3", "SKIPPED")]
    assert re.fullmatch(r"cooldown: fired less than 1h ago \(59m\d+s left\)|"
                        r"cooldown: fired less than 1h ago \(1h left\)", rows[0]["reason"])
