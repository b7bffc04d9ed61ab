"""Deadlines run on a monotonic clock (docs/run-health.md): a step of the wall clock, forward
or back, moves no heartbeat, cooldown or digest window, while what is recorded stays
wall time. A real actor and store with the wall clock stepped under them (every reader
of time.time() sees the step, as after NTP), then the Evaluator with both times given."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from conftest import eventually

from runhook.config.model import decode
from runhook.config.settings import build
from runhook.core.acks import Ticket
from runhook.core.events import RunHeartbeat, RunMetrics, RunState
from runhook.evaluate.evaluator import Evaluator
from runhook.evaluate.scope import ScopeActor
from runhook.store.database import Store
from runhook.store.statements import OPEN_DIGEST, UPSERT_FLAG, UPSERT_RUN

SCOPE = "project:acme/vision"
STEP = 600.0


def config(timeout: str) -> str:
    return f"""
[server]
heartbeat_timeout = "{timeout}"
client_heartbeat = "250ms"
[[automations]]
name = "health"
scope = "{SCOPE}"
event = {{ kind = "RUN_STATE", states = ["crashed", "finished"] }}
action = {{ kind = "none" }}
"""


class NoDeliveries:
    def offer(self, job: Any) -> None:
        raise AssertionError("kind none delivers nothing")


def state(run_id: str, said: str) -> RunState:
    return RunState(entity="acme", project="vision", run_id=run_id, run_name=run_id,
                    state=said)


def beat(run_id: str) -> RunHeartbeat:
    return RunHeartbeat(entity="acme", project="vision", run_id=run_id)


async def send(actor: ScopeActor, *events: Any) -> None:
    """Through the inbox, as a connection does; returns once the batch committed."""
    ticket = Ticket(asyncio.get_running_loop().create_future(), 1)
    await actor.inbox.send(([(e, time.time(), n) for n, e in enumerate(events, 1)], ticket))
    await ticket.future


def step_wall(monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + seconds)


async def test_a_forward_step_crashes_no_run_that_speaks(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch):
    """Two runs running with a 60 s timeout; the wall clock jumps 600 s ahead and one of
    them heartbeats. On the wall clock every deadline had passed and the other run was
    declared crashed at that event (issue 23: 46 of 50). Then both finish: the history
    holds the two finishes and nothing else, and the run rows keep wall times."""
    settings = build(decode(config("60s")))
    store = Store(tmp_path / "a.db")
    await store.open()
    actor = ScopeActor(SCOPE, settings.by_scope[SCOPE], store, NoDeliveries(),
                       settings=settings.scope(SCOPE))
    async with anyio.create_task_group() as tg:
        tg.start_soon(store.run)
        async with anyio.create_task_group() as actors:
            actors.start_soon(actor.run)
            await send(actor, state("r1", "running"), state("r2", "running"))
            step_wall(monkeypatch, STEP)
            await send(actor, beat("r1"))
            await send(actor, state("r1", "finished"), state("r2", "finished"))
            actor.inbox.close()
        history = await store.history()
        assert sorted((e.run_id, e.context["run_status"]) for e in history) == [
            ("r1", "finished"), ("r2", "finished")]
        runs = (await store.run_state(SCOPE))["runs"]
        # Recorded in the wall clock as it reads now (after the step).
        assert all(abs(row[5] - time.time()) < 30 for row in runs)  # ended_at
        store.finish()
    await store.close()


async def test_a_backward_step_delays_no_crash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A run running with a 1 s timeout goes silent and the wall clock jumps 600 s back.
    On the wall clock its deadline was 601 s away; it is declared crashed about 1 s
    after it last spoke, and the crash is recorded in wall time, after its last-seen."""
    settings = build(decode(config("1s")))
    store = Store(tmp_path / "a.db")
    await store.open()
    actor = ScopeActor(SCOPE, settings.by_scope[SCOPE], store, NoDeliveries(),
                       settings=settings.scope(SCOPE))
    async with anyio.create_task_group() as tg:
        tg.start_soon(store.run)
        async with anyio.create_task_group() as actors:
            actors.start_soon(actor.run)
            await send(actor, state("r1", "running"))
            step_wall(monkeypatch, -STEP)
            await eventually(store.history, lambda rows: len(rows) == 1, 20)
            actor.inbox.close()
        (crash,) = await store.history()
        assert crash.context["run_status"] == "crashed"
        (row,) = (await store.run_state(SCOPE))["runs"]
        assert row[3] == "crashed"
        assert 1.0 <= crash.created_at - row[4] < 10.0  # silent 1 s, on one wall clock
        assert abs(crash.created_at - time.time()) < 10.0  # the stepped wall clock
        store.finish()
    await store.close()


# The Evaluator with both times given: `now` (wall) jumps, `mono` runs on.
COOLED = """
[integrations.ci]
kind = "webhook"
url = "https://example.com/hook"
[[automations]]
name = "a"
scope = "project:acme/vision"
event = { kind = "RUN_METRIC_THRESHOLD", metric = "loss", cmp = ">", threshold = 5 }
action = { integration = "ci" }
cooldown = "1h"
"""


def loss(value: float) -> RunMetrics:
    return RunMetrics(entity="acme", project="vision", run_id="r1", values={"loss": value})


def test_a_cooldown_runs_on_the_monotonic_clock():
    """Fired at mono 100; 60 s later (mono 160) the wall clock reads 2 h on: the second
    crossing is still inside the 1 h cooldown (SKIPPED, 59 m left), and the flag row
    stores the firing's wall time as it reads now (now - 60 s)."""
    ev = Evaluator(SCOPE, build(decode(COOLED)).by_scope[SCOPE])
    wall = 1_700_000_000.0
    assert [r[8] for r in ev.evaluate(loss(10.0), wall, wall, 100.0).rows] == ["PENDING"]
    ev.evaluate(loss(1.0), wall, wall + 30, 130.0)
    caused = ev.evaluate(loss(10.0), wall, wall + 7200, 160.0)
    (row,) = caused.rows
    assert row[8] == "SKIPPED"
    assert "59m left" in row[9]
    (flag,) = [p for sql, params in caused.statements if sql == UPSERT_FLAG for p in params]
    assert flag[-1] == wall + 7200 - 60  # fired at mono 100, recorded as wall now - 60 s


def test_a_digest_window_closes_on_the_monotonic_clock():
    """A 30 s window opened at mono 100 (wall W): a wall step of +1 h does not close it
    at mono 110; it closes at mono 130. Its row stores wall times."""
    s = build(decode(COOLED.replace('cooldown = "1h"', 'cooldown = "0"\n'
                                    'digest = { window = "30s", by = [] }')))
    ev = Evaluator(SCOPE, s.by_scope[SCOPE])
    wall = 1_700_000_000.0
    caused = ev.evaluate(loss(10.0), wall, wall, 100.0)
    (window,) = [p for sql, params in caused.statements if sql == OPEN_DIGEST for p in params]
    assert (window[4], window[5]) == (wall, wall + 30)
    assert ev.expire(wall + 3610, 110.0).rows == []
    (digest,) = ev.expire(wall + 3630, 130.0).rows
    assert digest[0] == window[0]


def test_restore_reads_wall_times_into_the_monotonic_clock():
    """A run seen at wall W-20 is restored while the monotonic clock reads W-1000 (the
    wall clock was stepped 1000 s on): its row written back says W-20 again, not
    W+980, and its heartbeat deadline counts from the restore (mono W-1000 + 60)."""
    s = build(decode(config("60s")))
    ev = Evaluator(SCOPE, s.by_scope[SCOPE], None, s.scope(SCOPE))
    wall = 1_700_000_000.0
    runs = [("r1", "r1", "", "running", wall - 20, None, None, "[]", "{}", None)]
    ev.restore({"runs": runs, "windows": [], "log": [], "batches": [], "flags": []},
               wall, wall - 1000)
    assert ev.next_deadline() == wall - 1000 + 60
    caused = ev.evaluate(state("r1", "finished"), wall, wall, wall - 1000)
    (row,) = [p for sql, params in caused.statements if sql == UPSERT_RUN for p in params]
    assert row[6] == wall  # ended_at: now, on the wall clock
