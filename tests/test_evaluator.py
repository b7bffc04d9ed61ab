"""The Evaluator: what one event causes in a scope (rows, statements, jobs), checked
directly, with no actor, store or clock; and, through a real Store, that what it
returns is all a restart needs."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import anyio

from runhook.config.model import decode
from runhook.config.settings import Settings, build
from runhook.core.events import ArtifactCreated, RunMetrics, RunState
from runhook.core.executions import Job
from runhook.evaluate import metric_log
from runhook.evaluate.caused import Caused
from runhook.evaluate.evaluator import Evaluator
from runhook.store.database import Store, Write
from runhook.store.statements import (
    CLEAR_LOG,
    CLEAR_OLD_LOG,
    FORGET_RUN,
    INSERT_EVENT_ID,
    INSERT_EXECUTION,
    LOG_METRICS,
    UPSERT_FLAG,
    UPSERT_RUN,
    UPSERT_WINDOW,
)

SCOPE = "project:acme/vision"
WEBHOOK = """
[integrations.ci]
kind = "webhook"
url = "https://example.com/hook"
"""


def settings(event: str, action: str = '{ kind = "none" }', cooldown: str = "1h",
             head: str = "") -> Settings:
    return build(decode(f"""{head}
[[automations]]
name = "a"
scope = "{SCOPE}"
event = {event}
action = {action}
cooldown = "{cooldown}"
"""))


LOSS_ABOVE_5 = '{ kind = "RUN_METRIC_THRESHOLD", metric = "loss", cmp = ">", threshold = 5 }'


def evaluator(event: str = LOSS_ABOVE_5, **kw: str) -> tuple[Evaluator, str]:
    s = settings(event, **kw)
    return Evaluator(SCOPE, s.by_scope[SCOPE]), s.automations[0].digest


def loss(value: float, event_id: str | None = None, run_id: str = "r1") -> RunMetrics:
    return RunMetrics(entity="acme", project="vision", run_id=run_id, run_name="prod-1",
                      user="ana", values={"loss": value, "acc": 0.5}, id=event_id)


def state(value: str, run_id: str = "r1") -> RunState:
    return RunState(entity="acme", project="vision", run_id=run_id, run_name="prod-1",
                    user="ana", state=value)


# A run row's group, tags, config and state reason when the events told none.
NO_IDENTITY = (None, None, None, None)


def test_a_crossing_returns_its_execution_with_the_state_it_changed():
    ev, digest = evaluator()
    rows, statements, jobs, logged = ev.evaluate(loss(10.0, "e1"), 50.0, 100.0)
    (row,) = rows
    assert row[1:4] == ("a", SCOPE, "RUN_METRIC_THRESHOLD")
    assert row[5] == "e1" and row[8:10] == ("FINISHED", "recorded only (action kind = none)")
    assert row[11:] == ("r1", 100.0, 100.0, None)
    context = json.loads(row[10])
    assert context["execution_id"] == row[0]
    assert context["metric_values"] == [10.0] and context["metric_filter"] == "loss > 5"
    assert context["event_time"] == "1970-01-01T00:00:50.000Z"
    # The event joins the write's metric log; the run's first event writes its row
    # (its identity, so later events may carry run_id alone); the flag carries the
    # firing time (the cooldown's start); the id commits with all of it.
    assert logged is True
    assert statements == [
        (UPSERT_RUN, [(SCOPE, "r1", "prod-1", "ana", None, 100.0, None, None, None, None,
                       None)]),
        (UPSERT_FLAG, [(SCOPE, "r1", "a", digest, 1, 100.0)]),
        (INSERT_EVENT_ID, [("e1", SCOPE, 100.0)]),
    ]
    assert jobs == []  # kind = "none" is only recorded


def test_no_crossing_logs_the_value_and_nothing_else():
    ev, _ = evaluator()
    ev.evaluate(loss(10.0), 0.0, 0.0)
    assert ev.evaluate(loss(11.0), 0.0, 1.0) == ([], [], [], True)
    # A write's logged events go in one row: the scope and one blob of them all.
    events = [loss(11.0), loss(12.0, run_id="r2")]
    ((sql, ((scope, blob),)),) = [ev.log(events)]
    assert (sql, scope) == (LOG_METRICS, SCOPE)
    assert [(e.run_id, e.values) for e in metric_log.decode(blob)] == [
        ("r1", {"loss": 11.0, "acc": 0.5}), ("r2", {"loss": 12.0, "acc": 0.5})]


def test_an_unwatched_event_causes_nothing_but_its_id():
    ev, _ = evaluator()
    unwatched = RunMetrics(entity="acme", project="vision", run_id="r1", run_name="x",
                           user="ana", values={"acc": 1.0})
    assert ev.evaluate(unwatched, 0.0, 0.0) == ([], [], [], False)
    artifact = ArtifactCreated(entity="acme", project="vision", collection="c", version=1,
                               id="art-1")
    assert ev.evaluate(artifact, 0.0, 7.0) == (
        [], [(INSERT_EVENT_ID, [("art-1", SCOPE, 7.0)])], [], False)
    assert ev.book.runs == {}


def test_a_webhook_execution_is_pending_with_the_job_to_deliver_it():
    ev, _ = evaluator(action='{ integration = "ci" }', head=WEBHOOK)
    caused = ev.evaluate(loss(10.0), 0.0, 100.0)
    assert isinstance(caused, Caused)
    (row,) = caused.rows
    assert row[6:10] == ("webhook", "ci", "PENDING", None) and row[14] == 100.0
    assert caused.jobs == [Job(row[0], "a", "ci", json.loads(row[10]), 0, 100.0)]


def test_a_crossing_inside_the_cooldown_is_skipped_with_the_reason_and_not_delivered():
    ev, digest = evaluator(action='{ integration = "ci" }', head=WEBHOOK)
    assert [r[8] for r in ev.evaluate(loss(10.0), 0.0, 0.0).rows] == ["PENDING"]
    assert ev.evaluate(loss(1.0), 0.0, 30.0).statements[0] == (
        UPSERT_FLAG, [(SCOPE, "r1", "a", digest, 0, 0.0)])  # re-armed; still fired at 0
    rows, statements, jobs, _ = ev.evaluate(loss(10.0), 0.0, 60.0)
    assert [(r[8], r[9]) for r in rows] == [
        ("SKIPPED", "cooldown: fired less than 1h ago (59m left)")]
    assert jobs == []
    # A skip does not restart the cooldown: fired_at stays 0.
    assert statements[0] == (UPSERT_FLAG, [(SCOPE, "r1", "a", digest, 1, 0.0)])
    ev.evaluate(loss(1.0), 0.0, 3500.0)
    assert [r[8] for r in ev.evaluate(loss(10.0), 0.0, 3600.0).rows] == ["PENDING"]


def test_a_state_change_upserts_the_run_once():
    ev, digest = evaluator('{ kind = "RUN_STATE", states = ["finished"] }')
    assert ev.evaluate(state("running"), 0.0, 1.0) == (
        [], [(UPSERT_RUN, [(SCOPE, "r1", "prod-1", "ana", "running", 1.0, None, *NO_IDENTITY)])],
        [], False)
    rows, statements, _, _ = ev.evaluate(state("finished"), 0.0, 2.0)
    assert [(r[3], json.loads(r[10])["run_status"]) for r in rows] == [("RUN_STATE", "finished")]
    assert statements == [
        (UPSERT_RUN, [(SCOPE, "r1", "prod-1", "ana", "finished", 2.0, 2.0, *NO_IDENTITY)]),
        (UPSERT_FLAG, [(SCOPE, "r1", "a", digest, 0, 2.0)]),
    ]
    assert ev.evaluate(state("finished"), 0.0, 3.0) == ([], [], [], False)  # a repeat: nothing


def test_checkpoint_writes_what_changed_since_the_last_one_and_forgets_evicted_runs():
    ev, _ = evaluator('{ kind = "RUN_METRIC_THRESHOLD", metric = "loss", agg = "avg", '
                      'window = 2, cmp = ">", threshold = 5 }')
    ev.evaluate(loss(1.0), 0.0, 0.0)
    ev.evaluate(loss(2.0, run_id="r2"), 0.0, 0.0)
    statements, evicted = ev.checkpoint(10.0)
    assert evicted == []
    assert [sql for sql, _ in statements] == [CLEAR_LOG, CLEAR_OLD_LOG, UPSERT_WINDOW, UPSERT_RUN]
    assert statements[0][1] == statements[1][1] == [(SCOPE,)]
    windows = sorted(statements[2][1])
    assert [w[:4] for w in windows] == [(SCOPE, "r1", "loss", 2), (SCOPE, "r2", "loss", 2)]
    assert sorted(statements[3][1]) == [(SCOPE, "r1", "prod-1", "ana", None, 0.0, None,
                                         *NO_IDENTITY),
                                        (SCOPE, "r2", "prod-1", "ana", None, 0.0, None,
                                         *NO_IDENTITY)]
    assert ev.checkpoint(11.0) == ([], [])  # nothing logged since: nothing to write
    ev.evaluate(loss(3.0), 0.0, 5000.0)
    statements, evicted = ev.checkpoint(5000.0, evict=True, ttl=4000.0)
    assert evicted == ["r2"]  # silent since 0
    # r1 changed again since the last checkpoint: its window is written again.
    assert [w[1] for sql, params in statements if sql == UPSERT_WINDOW for w in params] == ["r1"]
    assert [(sql, params) for sql, params in statements if sql in FORGET_RUN] == [
        (sql, [(SCOPE, "r2")]) for sql in FORGET_RUN]
    assert list(ev.book.runs) == ["r1"]


async def commit(store: Store, ev: Evaluator, event: RunMetrics, now: float) -> None:
    """What the evaluator returned for `event`, and its metric log row, as the actor writes them."""
    caused = ev.evaluate(event, 0.0, now)
    statements = [*caused.statements, (INSERT_EXECUTION, caused.rows)]
    if caused.logged:
        statements.append(ev.log([event]))
    done: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
    await store.submit(Write(statements, done.set_result))
    assert await done is None


async def test_what_evaluate_returns_is_all_a_restart_needs(tmp_path: Path):
    """Commit only what the evaluator returned; an evaluator restored from the
    database keeps the window, the crossing flag and the cooldown."""
    ev, _ = evaluator('{ kind = "RUN_METRIC_THRESHOLD", metric = "loss", agg = "avg", '
                      'window = 2, cmp = ">", threshold = 5 }')
    store = Store(tmp_path / "a.db")
    await store.open()
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(store.run)
            for now, value in enumerate([0.0, 20.0, 20.0, 0.0, 0.0]):  # fires at 1, re-arms at 4
                await commit(store, ev, loss(value, f"e{now}"), float(now))
            restored, _ = evaluator('{ kind = "RUN_METRIC_THRESHOLD", metric = "loss", '
                                    'agg = "avg", window = 2, cmp = ">", threshold = 5 }')
            restored.restore(await store.run_state(SCOPE), 10.0)
            # [0, 20] -> avg 10 > 5: a crossing, inside the hour since 1.
            rows = restored.evaluate(loss(20.0), 0.0, 10.0).rows
            assert [(r[8], r[9]) for r in rows] == [
                ("SKIPPED", "cooldown: fired less than 1h ago (59m51s left)")]
            assert restored.evaluate(loss(20.0), 0.0, 11.0).rows == []  # still true
            store.finish()
    finally:
        await store.close()
