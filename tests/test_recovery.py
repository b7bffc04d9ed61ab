"""A crashed run that speaks again (docs/run-health.md): RUN_STATE `running` with reason
`recovered after N s of silence`, from every automation that fired for the crash
(PagerDuty: a resolve of its incident), in the same commit as the event that revived
the run. The Evaluator on a hand-written timeline (pure), then across a restore."""

from __future__ import annotations

from runhook.config.model import decode
from runhook.config.settings import Settings, build
from runhook.core.events import RunHeartbeat, RunState
from runhook.core.executions import EVENT_ACTION, RESOLVE
from runhook.delivery.channels import pagerduty
from runhook.evaluate.evaluator import Evaluator
from runhook.store.statements import INSERT_EVENT_ID, UPSERT_FLAG, UPSERT_RUN

SCOPE = "project:acme/vision"
CONFIG = f"""
[server]
heartbeat_timeout = "5m"

[secrets]
PD = {{ env = "PATH" }}

[integrations.pager]
kind = "pagerduty"
routing_key = "PD"

[integrations.hook]
kind = "webhook"
url = "https://example.com/hook"

[[automations]]
name = "run-crashed"
scope = "{SCOPE}"
event = {{ kind = "RUN_STATE", states = ["crashed"] }}
action = {{ integration = "pager" }}
cooldown = "1h"

[[automations]]
name = "run-failed"
scope = "{SCOPE}"
event = {{ kind = "RUN_STATE", states = ["failed"] }}
action = {{ integration = "hook" }}
cooldown = "1h"

[[automations]]
name = "run-finished"
scope = "{SCOPE}"
event = {{ kind = "RUN_STATE", states = ["finished"] }}
action = {{ integration = "hook" }}
"""


def settings() -> Settings:
    return build(decode(CONFIG))


def evaluator(s: Settings) -> Evaluator:
    return Evaluator(SCOPE, s.by_scope[SCOPE], None, s.scope(SCOPE))


def running() -> RunState:
    return RunState(entity="acme", project="vision", run_id="r1", run_name="prod-1",
                    state="running")


def beat(event_id: str | None = None) -> RunHeartbeat:
    return RunHeartbeat(entity="acme", project="vision", run_id="r1", id=event_id)


def crashed(ev: Evaluator) -> list[str]:
    """r1 running at 0, silent: crashed at 300 (the 5m timeout). The automations fired."""
    ev.evaluate(running(), 0.0, 0.0)
    caused = ev.expire(300.0)
    return sorted(row[1] for row in caused.rows)


def test_a_crashed_run_that_speaks_again_is_recovered_by_what_fired_for_its_crash():
    """Crashed at 300, a heartbeat at 345: silent 345 s. run-crashed and run-failed
    fired for the crash and fire again with run_status running and the reason, inside
    their 1h cooldown; run-finished did not and says nothing. PagerDuty's is a resolve
    of the crash's incident (same dedup key), not a second trigger. The firings, the
    run's row and the heartbeat's id are one Caused: one commit (docs/architecture.md)."""
    s = settings()
    ev = evaluator(s)
    assert crashed(ev) == ["run-crashed", "run-failed"]
    caused = ev.evaluate(beat("hb-1"), 345.0, 345.0)
    by_name = {row[1]: row for row in caused.rows}
    assert sorted(by_name) == ["run-crashed", "run-failed"]
    for row in caused.rows:
        assert row[8] == "PENDING" and row[9] == "recovered after 345 s of silence"
    contexts = {job.automation: job.context for job in caused.jobs}
    assert {c["run_status"] for c in contexts.values()} == {"running"}
    assert contexts["run-failed"]["metric_filter"] == (
        "run state becomes running again after a crash (recovered after 345 s of silence)")
    assert contexts["run-crashed"][EVENT_ACTION] == RESOLVE
    assert EVENT_ACTION not in contexts["run-failed"]
    sent = pagerduty.event("k" * 32, "t", "x", "ERROR", contexts["run-crashed"])
    assert sent == {"routing_key": "k" * 32, "event_action": "resolve",
                    "dedup_key": "run-crashed/r1"}
    sql = [statement for statement, _ in caused.statements]
    assert UPSERT_RUN in sql and INSERT_EVENT_ID in sql
    (run,) = [p for statement, params in caused.statements if statement == UPSERT_RUN
              for p in params]
    assert (run[4], run[-1]) == ("running", "recovered after 345 s of silence")
    # Running again: a later silence is a new crash (its pages inside the cooldown).
    assert {row[8] for row in ev.expire(645.0).rows} == {"SKIPPED"}
    assert ev.book.runs["r1"].state == "crashed"


def test_a_crash_skipped_by_its_cooldown_is_not_recovered_by_it():
    """run-crashed fired for a first crash at 300; the run recovers at 310 and crashes
    again at 610, inside run-crashed's 1h cooldown (SKIPPED, no page): when it speaks
    at 700 only the automations that fired for that crash would speak; both were
    skipped, so nothing is sent."""
    ev = evaluator(settings())
    crashed(ev)
    assert len(ev.evaluate(beat(), 310.0, 310.0).rows) == 2  # the first crash's recovery
    second = ev.expire(610.0)
    assert {row[8] for row in second.rows} == {"SKIPPED"}
    assert ev.evaluate(beat(), 700.0, 700.0).rows == []


def test_recovery_after_a_restart():
    """The crash committed; the daemon restarts (state from the store's rows, here the
    statements the crash wrote), and the run speaks 100 s after the restart: the
    recovery is sent still, and the silence counts from the run's last-seen."""
    s = settings()
    ev = evaluator(s)
    ev.evaluate(running(), 0.0, 0.0)
    crash = ev.expire(300.0)
    rows = {sql: params for sql, params in crash.statements}
    runs = [row[1:] for row in rows[UPSERT_RUN]]
    flags = [row[1:] for row in rows[UPSERT_FLAG]]
    fresh = evaluator(s)
    fresh.restore({"runs": runs, "windows": [], "log": [], "batches": [], "flags": flags},
                  1000.0)
    caused = fresh.evaluate(beat(), 1100.0, 1100.0)
    assert sorted((row[1], row[9]) for row in caused.rows) == [
        ("run-crashed", "recovered after 1100 s of silence"),
        ("run-failed", "recovered after 1100 s of silence")]
