"""Run health in the book, on a hand-written timeline of events and clock steps:
crashes from silence, stalls, non-finite values, identity, groups (pure, no daemon)."""

from __future__ import annotations

import math

from run_helpers import book, metrics

from runhook.core.events import RunHeartbeat, RunState
from runhook.evaluate.runbook import RunBook

CRASH = '{ kind = "RUN_STATE", states = ["failed"] }'


def beat(run_id: str = "r1", **identity) -> RunHeartbeat:
    return RunHeartbeat(entity="acme", project="vision", run_id=run_id, **identity)


def said(state: str, run_id: str = "r1", **identity) -> RunState:
    identity.setdefault("run_name", "prod-1")
    return RunState(entity="acme", project="vision", run_id=run_id, state=state, **identity)


def tick(b: RunBook, now: float) -> list[tuple[str, str, str]]:
    """Expire the timers due at `now`: (run or group, automation, FIRE/SKIP) per firing."""
    outcomes, groups = b.expire(now)
    out = [(o.run.run_id, f.automation.name, f.action)  # type: ignore[union-attr]
           for o in outcomes for f in o.firings]
    return out + [(f.group["group"], f.automation.name, f.action)  # type: ignore[index]
                  for f in groups]


# --- heartbeats and crashes (server default 5m = 300 s in run_helpers' settings) ---

def test_a_silent_running_run_crashes_once_at_its_deadline():
    b = book(CRASH)
    b.state(said("running"), 0.0)
    b.heartbeat(beat(), 100.0)       # deadline moves to 400 without a push
    assert tick(b, 300.0) == []       # the entry queued for 300 pops: still alive, requeued
    assert b.runs["r1"].state == "running"
    assert b.next_deadline() == 400.0
    assert tick(b, 399.9) == []
    assert tick(b, 400.0) == [("r1", "a", "FIRE")]
    run = b.runs["r1"]
    assert (run.state, run.reason, run.ended_at) == ("crashed", "no heartbeat for 5m", 400.0)
    assert tick(b, 10_000.0) == [] and b.next_deadline() is None  # exactly once


def test_a_crash_says_it_crashed_and_why_not_that_it_became_failed():
    b = book(CRASH)
    b.state(said("running"), 0.0)
    ((outcome,), _) = b.expire(300.0)
    (firing,) = outcome.firings
    assert (firing.action, firing.reason) == ("FIRE", "no heartbeat for 5m")
    assert firing.description == "run crashed: no heartbeat for 5m"


def test_a_client_says_why_its_run_failed():
    b = book(CRASH)
    b.state(said("running"), 0.0)
    (firing,) = b.state(said("failed", reason="SIGTERM"), 1.0).firings
    assert (firing.action, firing.reason) == ("FIRE", "SIGTERM")
    assert firing.description == "run state becomes failed (SIGTERM)"
    assert (b.runs["r1"].state, b.runs["r1"].reason) == ("failed", "SIGTERM")


def test_a_crashed_run_that_speaks_is_running_again():
    b = book('{ kind = "RUN_STATE", states = ["running", "crashed"] }')
    fired = [f.automation.name for f in b.state(said("running"), 0.0).firings]
    assert fired == ["a"]
    assert tick(b, 300.0) == [("r1", "a", "FIRE")]  # crashed
    outcome = b.metrics(metrics({"loss": 1.0}), 301.0)  # speaks again: running, fires again
    assert b.runs["r1"].state == "running" and outcome.state_changed
    assert [f.action for f in outcome.firings] == ["FIRE"]
    assert b.next_deadline() == 601.0


def test_crashed_alone_is_only_silent_deaths_and_failed_includes_it():
    only_crashed = book('{ kind = "RUN_STATE", states = ["crashed"] }')
    only_crashed.state(said("running"), 0.0)
    assert only_crashed.state(said("failed"), 1.0).firings == []  # a reported failure
    failed = book(CRASH)
    failed.state(said("running"), 0.0)
    assert tick(failed, 300.0) == [("r1", "a", "FIRE")]
    # the process was only slow and then reports failed: not a second failure
    assert failed.state(said("failed"), 301.0).firings == []
    # a client's own `crashed` is a failure, not a silent death
    reported = book('{ kind = "RUN_STATE", states = ["crashed"] }')
    reported.state(said("running"), 0.0)
    assert reported.state(said("crashed"), 1.0).firings == []
    assert reported.runs["r1"].state == "failed"


def test_a_run_that_only_logs_metrics_never_crashes():
    """runhook.init heartbeats only when idle: a run logging every 100 s for 20 min with
    a 5 m timeout and no heartbeat is alive at every deadline (the metric fast path
    refreshes its last-seen; issue 23), and crashes 5 m after its last value."""
    b = book(CRASH)
    b.state(said("running", user="ana"), 0.0)
    for now in range(100, 1300, 100):
        b.metrics(metrics({"loss": 1.0}), float(now))
        assert tick(b, float(now)) == []
    assert b.runs["r1"].state == "running"
    assert tick(b, 1499.0) == [] and tick(b, 1500.0) == [("r1", "a", "FIRE")]


def test_metrics_alone_make_a_run_running_and_a_finished_run_never_crashes():
    b = book(CRASH)
    b.metrics(metrics({"loss": 1.0}), 10.0)
    assert b.runs["r1"].state == "running" and b.next_deadline() == 310.0
    b.state(said("finished"), 20.0)
    assert tick(b, 1000.0) == []


def test_per_automation_timeout_the_longest_of_the_watchers_wins():
    b = book('{ kind = "RUN_STATE", states = ["failed"], heartbeat_timeout = "30s" }')
    b.state(said("running"), 0.0)
    assert tick(b, 29.0) == [] and tick(b, 30.0) == [("r1", "a", "FIRE")]
    assert b.runs["r1"].reason == "no heartbeat for 30s"


def test_of_two_watchers_with_different_timeouts_the_longer_declares_the_crash():
    """`a` asks after 30 s of silence, `b` after 90 s. The crash is one fact, declared
    once for both, when the longer has passed: at 90, not at 30 (when `b` would hear
    of a crash before its own timeout)."""
    b = book('{ kind = "RUN_STATE", states = ["failed"], heartbeat_timeout = "30s" }',
             extra="""
[[automations]]
name = "b"
scope = "project:acme/vision"
event = { kind = "RUN_STATE", states = ["crashed"], heartbeat_timeout = "90s" }
action = { kind = "none" }
cooldown = "0"
""")
    b.state(said("running"), 0.0)
    assert tick(b, 30.0) == [] and b.runs["r1"].state == "running"
    assert tick(b, 89.9) == []
    assert sorted(tick(b, 90.0)) == [("r1", "a", "FIRE"), ("r1", "b", "FIRE")]
    assert b.runs["r1"].reason == "no heartbeat for 1m30s"


def test_downtime_does_not_count_deadlines_restart_from_the_start():
    b = book(CRASH)
    b.state(said("running"), 0.0)
    run = b.runs["r1"]
    # What the database holds after a kill -9 at t=100; the daemon starts at t=1000.
    row = ("r1", run.name, run.user, "running", 100.0, None, None, None, None, None)
    restored = book(CRASH)
    restored.restore({"runs": [row], "windows": [], "log": [], "batches": [], "flags": []},
                     {}, 1000.0)
    assert tick(restored, 1000.0) == []        # silent 900 s, but 0 s since the start
    assert restored.next_deadline() == 1300.0
    assert tick(restored, 1300.0) == [("r1", "a", "FIRE")]


def test_an_unwatched_scope_keeps_no_deadline():
    b = book('{ kind = "RUN_METRIC_THRESHOLD", metric = "loss", cmp = ">", threshold = 5 }')
    b.metrics(metrics({"loss": 1.0}), 0.0)
    b.heartbeat(beat(), 1.0)
    assert b.next_deadline() is None and b.runs["r1"].state is None


# --- RUN_STALLED ---------------------------------------------------------------

STALL = '{ kind = "RUN_STALLED", metric = "loss", for = "60s" }'


def test_a_stall_fires_once_and_rearms_when_values_resume():
    b = book(STALL)
    b.metrics(metrics({"loss": 1.0}), 0.0)     # running; loss seen at 0 -> due at 60
    b.metrics(metrics({"loss": 1.0}), 30.0)    # seen at 30 -> due at 90 (no push)
    assert tick(b, 60.0) == []                 # requeued for 90
    assert tick(b, 90.0) == [("r1", "a", "FIRE")]
    assert tick(b, 500.0) == []                # fired: no more until values resume
    # (the heartbeat deadline at 330 passes too: the run has crashed by now)
    b2 = book(STALL)
    b2.metrics(metrics({"loss": 1.0}), 0.0)
    assert tick(b2, 60.0) == [("r1", "a", "FIRE")]
    outcome = b2.metrics(metrics({"loss": 2.0}), 70.0)  # resumes: re-armed, watched from 70
    assert ("a", False, 60.0) in outcome.flags
    assert tick(b2, 129.0) == [] and tick(b2, 130.0) == [("r1", "a", "FIRE")]


def test_heartbeats_do_not_reset_a_stall_other_metrics_do_not_either():
    b = book(STALL)
    b.metrics(metrics({"loss": 1.0}), 0.0)
    b.heartbeat(beat(), 30.0)
    b.metrics(metrics({"acc": 0.5}), 40.0)
    assert tick(b, 60.0) == [("r1", "a", "FIRE")]


def test_a_stall_on_any_metric():
    b = book('{ kind = "RUN_STALLED", for = "60s" }')
    b.metrics(metrics({"loss": 1.0}), 0.0)
    b.metrics(metrics({"acc": 0.5}), 50.0)
    b.metrics(metrics({"acc": None}), 100.0)   # null is no value
    assert tick(b, 109.0) == [] and tick(b, 110.0) == [("r1", "a", "FIRE")]


def test_a_stall_inside_its_cooldown_is_skipped():
    b = book(STALL, cooldown="1h")
    b.metrics(metrics({"loss": 1.0}), 0.0)
    assert tick(b, 60.0) == [("r1", "a", "FIRE")]
    b.metrics(metrics({"loss": 1.0}), 61.0)
    assert tick(b, 121.0) == [("r1", "a", "SKIP")]


# --- RUN_METRIC_NONFINITE ------------------------------------------------------

def test_nonfinite_fires_on_nan_and_infinity_not_on_null_and_rearms_after_finite():
    b = book('{ kind = "RUN_METRIC_NONFINITE", metric = "loss" }')
    series = [1.0, None, math.nan, math.nan, 2.0, math.inf, -math.inf, 3.0, -math.inf]
    fired = [i for i, v in enumerate(series)
             for f in b.metrics(metrics({"loss": v}), float(i)).firings if f.action == "FIRE"]
    # 1 finite; null nothing; NaN fires (2); NaN holds; 2 re-arms; inf fires (5);
    # -inf holds; 3 re-arms; -inf fires (8)
    assert fired == [2, 5, 8]


def test_nonfinite_leaves_other_metrics_and_the_fast_path_alone():
    b = book('{ kind = "RUN_METRIC_NONFINITE", metric = "loss" }')
    assert b.metrics(metrics({"acc": math.nan}), 0.0).firings == []
    assert list(b.runs["r1"].rings) == []  # nothing kept for it


# --- identity ------------------------------------------------------------------

def test_an_event_with_run_id_alone_matches_through_the_remembered_name():
    b = book('{ kind = "RUN_METRIC_THRESHOLD", metric = "loss", cmp = ">", threshold = 5, '
             'run_name = "^prod-" }')
    b.metrics(metrics({"loss": 1.0}, name="prod-7"), 0.0)
    alone = metrics({"loss": 9.0}, name="", user="")
    assert [f.action for f in b.metrics(alone, 1.0).firings] == ["FIRE"]
    assert (b.runs["r1"].name, b.runs["r1"].user) == ("prod-7", "ana")


def test_group_and_tags_filters_and_identity_is_remembered():
    table = ('{ kind = "RUN_METRIC_THRESHOLD", metric = "loss", cmp = ">", threshold = 5, '
             'group = "^sweep-", tags = ["a100", "base"] }')
    b = book(table)
    # no group yet: not watched
    assert b.metrics(metrics({"loss": 9.0}), 0.0).firings == []
    b.heartbeat(beat(group="sweep-1", tags=["base", "a100", "x"], config={"lr": 0.1}), 1.0)
    b.metrics(metrics({"loss": 1.0}), 1.5)
    assert [f.action for f in b.metrics(metrics({"loss": 9.0}), 2.0).firings] == ["FIRE"]
    run = b.runs["r1"]
    assert (run.group, run.tags, run.config) == ("sweep-1", ("base", "a100", "x"), {"lr": 0.1})
    b.heartbeat(beat(config={"bs": 64}), 3.0)  # config grows, merged
    assert run.config == {"lr": 0.1, "bs": 64}
    missing_tag = book(table)
    missing_tag.heartbeat(beat(group="sweep-1", tags=["base"]), 0.0)
    assert missing_tag.metrics(metrics({"loss": 9.0}), 1.0).firings == []


# --- GROUP_FINISHED ------------------------------------------------------------

GROUP = ('{ kind = "GROUP_FINISHED", group = "^sweep-", settle = "2m", metric = "val_loss", '
         'goal = "minimize" }')


def test_a_sweep_fires_once_with_counts_and_the_best_run():
    b = book(GROUP + "\n" + "", extra="")
    # Five runs join at t=0..4; r1..r5 log val_loss; r2 and r5 fail, r4 crashes.
    losses = {"r1": [0.9, 0.5], "r2": [0.3], "r3": [0.8, 0.4], "r4": [0.2], "r5": []}
    for i, (run_id, values) in enumerate(losses.items()):
        b.state(said("running", run_id, run_name=f"trial-{i + 1}", group="sweep-a"), float(i))
        for value in values:
            b.metrics(metrics({"val_loss": value}, run_id=run_id, name=""), float(i) + 0.5)
    b.state(said("finished", "r1", run_name="trial-1"), 10.0)
    b.state(said("failed", "r2", run_name="trial-2"), 11.0)
    b.state(said("finished", "r3", run_name="trial-3"), 12.0)
    b.state(said("failed", "r5", run_name="trial-5"), 13.0)
    assert tick(b, 200.0) == []          # r4 is still running (its deadline is 303.5)
    # r4 goes silent: crashed at 303.5 (last seen 3.5 + 300)
    assert tick(b, 303.5) == []          # crashed; the group settles from its last join (4)
    firings = b.expire(303.6)[1]
    assert len(firings) == 1
    assert firings[0].group == {
        "group": "sweep-a", "group_runs": 5, "group_finished": 2, "group_failed": 3,
        # last values: r1 0.5, r2 0.3, r3 0.4, r4 0.2, r5 none; only r1 and r3 finished,
        # and a failed or crashed run is no winner: r3's 0.4 is the lowest of theirs
        "group_best_run": "trial-3", "group_best_value": 0.4}
    assert tick(b, 10_000.0) == []        # once per group


def test_the_best_run_is_a_finished_one_with_a_finite_value():
    b = book(GROUP)
    # r1 logged 0.1, then NaN (not a value: its ring keeps 0.1), and failed; r2 finished
    # at 0.7; r3 finished at 0.6 after an -inf (its last value counts); r4 finished on
    # -inf, which is lowest but not finite. Best of the finished, finite: r3's 0.6.
    logged = {"r1": [0.1, math.nan], "r2": [0.7], "r3": [-math.inf, 0.6],
              "r4": [0.05, -math.inf]}
    for i, (run_id, values) in enumerate(logged.items()):
        b.state(said("running", run_id, run_name=f"trial-{i + 1}", group="sweep-n"), 0.0)
        for value in values:
            b.metrics(metrics({"val_loss": value}, run_id=run_id, name=""), 1.0)
    b.state(said("failed", "r1", run_name="trial-1"), 2.0)
    for i, run_id in enumerate(("r2", "r3", "r4")):
        b.state(said("finished", run_id, run_name=f"trial-{i + 2}"), 2.0)
    (firing,) = b.expire(120.0)[1]
    assert (firing.group["group_best_run"], firing.group["group_best_value"]) == ("trial-3", 0.6)
    assert (firing.group["group_finished"], firing.group["group_failed"]) == (3, 1)


def test_no_best_run_when_none_finished():
    b = book(GROUP)
    b.state(said("running", "r1", run_name="trial-1", group="sweep-x"), 0.0)
    b.metrics(metrics({"val_loss": 0.1}, run_id="r1", name=""), 1.0)
    b.state(said("failed", "r1"), 2.0)
    (firing,) = b.expire(120.0)[1]
    assert (firing.group["group_best_run"], firing.group["group_best_value"]) == ("", "")


def test_a_group_waits_for_settle_after_the_last_join():
    b = book('{ kind = "GROUP_FINISHED", settle = "2m" }')
    b.state(said("running", "r1", group="g"), 0.0)
    b.state(said("finished", "r1"), 10.0)
    b.state(said("running", "r2", group="g"), 100.0)   # joins at 100
    b.state(said("finished", "r2"), 110.0)
    assert tick(b, 219.0) == []
    assert [(g, f) for g, _, f in tick(b, 220.0)] == [("g", "FIRE")]


# --- configuration ---------------------------------------------------------------

def test_health_configuration_errors_name_their_field():
    import pytest

    from runhook.config.model import ConfigError, decode
    from runhook.config.settings import build

    def problems(text: str) -> str:
        with pytest.raises(ConfigError) as info:
            build(decode(text))
        return str(info.value)

    automation = ('[[automations]]\nname = "x"\nscope = "project:a/b"\n'
                  'action = { kind = "none" }\nevent = ')
    assert "event.for: expected a duration" in problems(
        automation + '{ kind = "RUN_STALLED", for = "soon" }')
    assert "event.heartbeat_timeout: expected a duration above 0" in problems(
        automation + '{ kind = "RUN_STATE", states = ["failed"], heartbeat_timeout = "0" }')
    assert "event.goal: `metric` and `goal` go together" in problems(
        automation + '{ kind = "GROUP_FINISHED", metric = "loss" }')
    assert "GROUP_FINISHED cannot happen in a registry scope" in problems(
        automation.replace("project:a/b", "registry:a/b") + '{ kind = "GROUP_FINISHED" }')
    assert 'scopes."project:a/b".run_url: unknown placeholder {nope}' in problems(
        '[scopes."project:a/b"]\nrun_url = "https://x/{nope}"')
    assert "server.heartbeat_timeout: expected a duration above 0" in problems(
        '[server]\nheartbeat_timeout = "0"')
