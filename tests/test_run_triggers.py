"""Run triggers walked through hand-written series; expected indices worked out by hand."""

from __future__ import annotations

import math

import pytest
from run_helpers import book, feed, metrics, state

from runhook.config.model import decode
from runhook.config.settings import build
from runhook.core.events import RunMetrics

INF = math.inf
NAN = math.nan


def threshold(cmp: str, t: float, window: int = 1, agg: str | None = None, **kw) -> str:
    agg_part = f', agg = "{agg}"' if agg else ""
    extra = "".join(f", {k} = {v!r}" for k, v in kw.items()).replace("'", '"')
    return (f'{{ kind = "RUN_METRIC_THRESHOLD", metric = "loss", cmp = "{cmp}", '
            f"threshold = {t}, window = {window}{agg_part}{extra} }}")


# --- threshold ---------------------------------------------------------------

def test_window_not_yet_full_does_not_evaluate():
    # avg of last 3 > 5: values 9, 9 (2 values: not evaluated), 9 -> avg 9 > 5 fires at index 2
    assert feed(book(threshold(">", 5, 3, "avg")), [9, 9, 9, 9]) == ([2], [])


@pytest.mark.parametrize("cmp, fired", [
    # series 4, 5, 6 against threshold 5, each evaluation on its own (window 1):
    (">", [2]),        # 4>5 F, 5>5 F, 6>5 T
    (">=", [1]),       # F, T, T -> fires once at 1
    ("<", [0]),        # T, F, F
    ("<=", [0]),       # T, T, F
    ("==", [1]),       # F, T, F
    ("!=", [0, 2]),    # T, F, T -> two crossings
])
def test_exact_boundary_for_each_comparison(cmp, fired):
    assert feed(book(threshold(cmp, 5)), [4, 5, 6]) == (fired, [])


def test_flapping_fires_once_per_crossing():
    # > 10: 11 T(fire 0), 12 T, 9 F, 11 T(fire 3), 8 F, 8 F, 15 T(fire 6), 15 T
    assert feed(book(threshold(">", 10)), [11, 12, 9, 11, 8, 8, 15, 15]) == ([0, 3, 6], [])


def test_cooldown_skips_crossings_inside_it():
    # cooldown 10 s, values one second apart: crossings at 0, 2, 4, 12
    series = [11, 9, 11, 9, 11, 9, 9, 9, 9, 9, 9, 9, 11]
    b = book(threshold(">", 10), cooldown="10s")
    # fired at t=0; t=2 and t=4 are within 10 s of it -> SKIPPED; t=12 is 12 s after -> fires
    assert feed(b, series) == ([0, 12], [2, 4])


def test_aggregates_over_the_window():
    # window 3 on 1, 2, 9, 1, 1: windows (1,2,9) (2,9,1) (9,1,1)
    series = [1, 2, 9, 1, 1]
    assert feed(book(threshold(">", 3, 3, "avg")), series) == ([2], [])   # avgs 4, 4, 3.67
    assert feed(book(threshold(">=", 2, 3, "min")), series) == ([], [])   # mins 1, 1, 1
    assert feed(book(threshold("<", 9, 3, "max")), series) == ([], [])    # maxes 9, 9, 9
    assert feed(book(threshold("<", 3, 3, "mean")), series) == ([], [])   # alias of avg


def test_nan_and_null_are_ignored_infinity_takes_part():
    # window 2 avg > 5: 1, NaN (ignored), None (ignored), 20 -> window (1, 20) avg 10.5 fires
    # at index 3; then inf -> (20, inf) still true; -inf -> (inf, -inf) is NaN: no verdict,
    # flag stays; 0 -> (-inf, 0) avg -inf false; inf -> (0, inf) inf true: fires at 7.
    series = [1, NAN, None, 20, INF, -INF, 0, INF]
    assert feed(book(threshold(">", 5, 2, "avg")), series) == ([3, 7], [])


def test_run_filters():
    table = threshold(">", 0, run_name="^prod-", user=["ana", "bo"])
    assert feed(book(table), [1], name="prod-7", user="bo") == ([0], [])
    assert feed(book(table), [1], name="dev-7", user="bo") == ([], [])
    assert feed(book(table), [1], name="prod-7", user="cy") == ([], [])
    single_user = threshold(">", 0, user="ana")
    assert feed(book(single_user), [1], user="ana") == ([0], [])


def test_runs_are_independent():
    b = book(threshold(">", 10))
    assert feed(b, [11], run_id="r1") == ([0], [])
    assert feed(b, [11], run_id="r2") == ([0], [])
    assert feed(b, [12], run_id="r1") == ([], [])


def test_unwatched_metrics_are_not_kept():
    b = book(threshold(">", 10))
    b.metrics(metrics({"acc": 0.5, "lr": 0.1}), 0.0)
    assert b.runs == {}
    b.metrics(metrics({"acc": 0.5, "loss": 1.0}), 0.0)
    assert list(b.runs["r1"].rings) == ["loss"]


# --- change ------------------------------------------------------------------

def change(**kw) -> str:
    fields = ", ".join(f"{k} = {v!r}" for k, v in kw.items()).replace("'", '"')
    return f'{{ kind = "RUN_METRIC_CHANGE", metric = "loss", {fields} }}'


def test_absolute_change_with_prior_window():
    # window 2, prior 2, avg, increase by >= 3
    # values 1 1 1 1 5 5 5 5: at i=3 windows prior(1,1)=1 cur(1,1)=1 d=0
    # i=4: prior(1,1) cur(1,5)=3 d=2; i=5: prior(1,1) cur(5,5)=5 d=4 fires;
    # i=6: prior(1,5)=3 cur(5,5)=5 d=2 re-arms; i=7: prior(5,5) cur(5,5) d=0
    b = book(change(window=2, prior_window=2, direction="increase", amount=3))
    assert feed(b, [1, 1, 1, 1, 5, 5, 5, 5]) == ([5], [])


def test_decrease_and_any():
    # window 1 (prior 1 by default): deltas 10->4 = -6, 4->4 = 0, 4->12 = +8
    series = [10, 4, 4, 12]
    assert feed(book(change(direction="decrease", amount=5)), series) == ([1], [])
    assert feed(book(change(direction="any", amount=5)), series) == ([1, 3], [])
    assert feed(book(change(direction="increase", amount=8)), series) == ([3], [])


def test_relative_change_skips_a_zero_prior():
    # relative increase >= 50 %: 0 -> 5 (prior 0: skipped), 5 -> 10 (+100 %: fires),
    # 10 -> 0 (-100 %: false), 0 -> 3 (prior 0: skipped, flag stays false), 3 -> 6 fires
    b = book(change(change="relative", direction="increase", amount=0.5))
    assert feed(b, [0, 5, 10, 0, 3, 6]) == ([2, 5], [])


def test_relative_change_against_a_negative_prior():
    # -10 -> -4: (−4 − −10)/|−10| = +0.6 -> an increase of 60 %
    b = book(change(change="relative", direction="increase", amount=0.5))
    assert feed(b, [-10, -4]) == ([1], [])


# --- zscore ------------------------------------------------------------------

def zscore(**kw) -> str:
    fields = ", ".join(f"{k} = {v!r}" for k, v in kw.items()).replace("'", '"')
    return f'{{ kind = "RUN_METRIC_ZSCORE", metric = "loss", {fields} }}'


def test_zscore_against_the_earlier_window():
    # window 4: earlier 1,3,1,3 -> mean 2, population stdev 1.
    # x = 5 -> z = 3 (>= 3: fires); then earlier 3,1,3,5 mean 3 sd sqrt(2) x=3 z=0 re-arms
    b = book(zscore(window=4, threshold=3, direction="increase"))
    assert feed(b, [1, 3, 1, 3, 5, 3]) == ([4], [])
    b = book(zscore(window=4, threshold=3, direction="decrease"))
    assert feed(b, [1, 3, 1, 3, -1]) == ([4], [])   # z = (−1 − 2)/1 = −3
    b = book(zscore(window=4, threshold=3.01, direction="any"))
    assert feed(b, [1, 3, 1, 3, 5]) == ([], [])     # |z| = 3 < 3.01


def test_zscore_with_zero_stdev_is_skipped():
    # earlier 2,2,2 has stdev 0: skipped, whatever x is
    b = book(zscore(window=3, threshold=1))
    assert feed(b, [2, 2, 2, 100]) == ([], [])
    # then earlier 2,2,100 has stdev > 0: x = 2 -> mean 34.67, sd 46.2, z = -0.71: no
    assert feed(b, [2]) == ([], [])


def test_zscore_infinity():
    # earlier 1,3,1,3 (mean 2, sd 1); x = +inf -> z = +inf fires for increase
    b = book(zscore(window=4, threshold=3, direction="increase"))
    assert feed(b, [1, 3, 1, 3, INF]) == ([4], [])
    # next: earlier 3,1,3,inf -> mean inf, stdev nan -> skipped
    assert feed(b, [1]) == ([], [])


# --- state -------------------------------------------------------------------

def test_run_state_changes_into_watched_states():
    b = book('{ kind = "RUN_STATE", states = ["finished", "failed"] }')
    # running (not watched), failed fires, repeated failed does not, crashed = failed does not,
    # finished fires (a change into a watched state)
    assert state(b, ["running", "failed", "failed", "crashed", "finished"]) == ([1, 4], [])


def test_killed_never_fires_and_crashed_counts_as_failed():
    b = book('{ kind = "RUN_STATE", states = ["failed"] }')
    assert state(b, ["running", "killed", "crashed"], run_id="r9") == ([2], [])
    assert state(b, ["killed"], run_id="r10") == ([], [])


def test_run_state_cooldown():
    b = book('{ kind = "RUN_STATE", states = ["running", "failed"] }', cooldown="1h")
    # running fires at t=0; failed at t=10 is inside the hour -> SKIPPED
    assert state(b, ["running", "failed"], times=[0.0, 10.0]) == ([0], [1])


def test_first_state_report_counts():
    b = book('{ kind = "RUN_STATE", states = ["running"] }')
    assert state(b, ["running", "running"]) == ([0], [])


# --- memory ------------------------------------------------------------------

def test_ring_is_sized_to_the_largest_window_reading_the_metric():
    settings_book = book(threshold(">", 1, 5, "avg"), extra="""
[[automations]]
name = "b"
scope = "project:acme/vision"
event = { kind = "RUN_METRIC_ZSCORE", metric = "loss", window = 30 }
action = { kind = "none" }
""")
    feed(settings_book, list(range(100)))
    ring = settings_book.runs["r1"].rings["loss"]
    assert ring.size == 31 and ring.values() == [float(v) for v in range(69, 100)]


def test_eviction_of_ended_and_silent_runs():
    b = book(threshold(">", 10))
    b.metrics(metrics({"loss": 1.0}, run_id="silent"), 0.0)
    b.metrics(metrics({"loss": 1.0}, run_id="active"), 0.0)
    state_book = b
    from runhook.core.events import RunState
    state_book.state(RunState(entity="acme", project="vision", run_id="done", run_name="x",
                              user="u", state="finished"), 0.0)  # unwatched state: not tracked
    b.metrics(metrics({"loss": 1.0}, run_id="done"), 0.0)
    b.state(RunState(entity="acme", project="vision", run_id="done", run_name="x", user="u",
                     state="finished"), 100.0)
    b.metrics(metrics({"loss": 1.0}, run_id="active"), 5000.0)
    # ttl 4000 s: "silent" last seen at 0; "done" ended at 100, more than an hour before 5000
    assert sorted(b.evict(5000.0, ttl=4000.0)) == ["done", "silent"]
    assert list(b.runs) == ["active"]


def test_reload_keeps_state_of_unchanged_automations_only():
    from runhook.config.model import decode
    from runhook.config.settings import build
    from runhook.evaluate.evaluator import Evaluator

    def settings(b_threshold: float):
        return build(decode(f"""
[[automations]]
name = "a"
scope = "project:acme/vision"
event = {{ kind = "RUN_METRIC_THRESHOLD", metric = "loss", cmp = ">", threshold = 5 }}
action = {{ kind = "none" }}
cooldown = "0"
[[automations]]
name = "b"
scope = "project:acme/vision"
event = {{ kind = "RUN_METRIC_THRESHOLD", metric = "loss", cmp = ">", threshold = {b_threshold} }}
action = {{ kind = "none" }}
cooldown = "0"
"""))

    before = settings(5)
    evaluator = Evaluator("project:acme/vision", before.automations)

    def fired(value: float) -> list[str]:
        rows = evaluator.evaluate(metrics({"loss": value}), 0.0, 0.0).rows
        return sorted(row[1] for row in rows)

    assert fired(10) == ["a", "b"]       # both cross
    assert fired(11) == []               # both still true: no new crossing
    window = evaluator.book.runs["r1"].rings["loss"]
    evaluator.reconfigure(settings(6).automations)  # b changed, a did not
    assert fired(12) == ["b"]            # a kept its state; b starts afresh and crosses
    assert evaluator.book.runs["r1"].rings["loss"] is window  # the run was kept, not rebuilt


# --- the metric log a restart replays ---------------------------------------

@pytest.mark.parametrize("values", [
    {"loss": 0.1 + 0.2, "acc": 1e-300},
    {"loss": INF, "null": -INF},
])
def test_logged_values_round_trip_exactly(values):
    from runhook.evaluate import metric_log
    (logged,) = metric_log.decode(metric_log.encode([metrics(values)]))
    assert (logged.run_id, logged.run_name, logged.user) == ("r1", "prod-1", "ana")
    assert logged.values == values


# metric_log rows as they lie in databases, written out byte by byte. Before JSON
# text, every row was msgpack (a map of str to float64, 0xcb + big-endian IEEE 754);
# a row holding ±Infinity still is. A database upgraded in place must replay them all.
MSGPACK_HALF_AND_QUARTER = b"\x82\xa4loss\xcb\x3f\xe0\0\0\0\0\0\0\xa3acc\xcb\x3f\xd0\0\0\0\0\0\0"
MSGPACK_ONE = b"\x81\xa4loss\xcb\x3f\xf0\0\0\0\0\0\0"
MSGPACK_INF = b"\x81\xa4loss\xcb\x7f\xf0\0\0\0\0\0\0"
MSGPACK_MINUS_INF = b"\x81\xa4loss\xcb\xff\xf0\0\0\0\0\0\0"
JSON_TWO = '{"loss":2.0}'


@pytest.mark.parametrize("row, values", [
    (MSGPACK_HALF_AND_QUARTER, {"loss": 0.5, "acc": 0.25}),
    (MSGPACK_ONE, {"loss": 1.0}),
    (MSGPACK_INF, {"loss": INF}),
    (MSGPACK_MINUS_INF, {"loss": -INF}),
    (JSON_TWO, {"loss": 2.0}),
    ('{"loss":0.30000000000000004,"acc":1e-300}', {"loss": 0.1 + 0.2, "acc": 1e-300}),
])
def test_logged_rows_already_in_databases_decode(row, values):
    from runhook.evaluate import metric_log
    (logged,) = metric_log.old_rows([("r1", "prod-1", "ana", row)])
    assert (logged.run_id, logged.run_name, logged.user, logged.values) == \
        ("r1", "prod-1", "ana", values)


# A metric_batches blob of the version before run identity: a msgpack array (0x91)
# of the events as the wire carried them, each a map of its fields.
BATCH_TWO = (b"\x91\x8b\xa4type\xabrun.metrics\xa6entity\xa4acme\xa7project\xa6vision"
             b"\xa8registry\xc0\xa2id\xc0\xa4time\xc0\xa6run_id\xa2r1\xa8run_name\xa6prod-1"
             b"\xa4user\xa3ana\xa4step\xc0\xa6values\x81\xa4loss\xcb\x40\0\0\0\0\0\0\0")
# The version before Compact: the same, with the run's group, tags and config (nil
# here), so a replay restores the identity an event carried.
BATCH_IDENTITY = BATCH_TWO.replace(b"\x8b\xa4type", b"\x8e\xa4type").replace(
    b"\xa3ana", b"\xa3ana\xa5group\xc0\xa4tags\xc0\xa6config\xc0")
# This version's, for an event with no group, tags or config: an array (0x94) of
# run_id, values, run_name and user.
BATCH_COMPACT = b"\x91\x94\xa2r1\x81\xa4loss\xcb\x40\0\0\0\0\0\0\0\xa6prod-1\xa3ana"


def test_this_version_logs_one_msgpack_blob_of_events():
    """What later versions will find in the log: pinned, so a change of format is a
    decision (with a reader for these rows), not an accident."""
    from runhook.evaluate import metric_log
    assert metric_log.encode([metrics({"loss": 2.0})]) == BATCH_COMPACT
    # An event with a group, tags or config is logged whole, as the version before did.
    grouped = RunMetrics(entity="acme", project="vision", run_id="r1", run_name="prod-1",
                         user="ana", values={"loss": 2.0}, group="g1")
    assert metric_log.encode([grouped]) == BATCH_IDENTITY.replace(
        b"\xa5group\xc0", b"\xa5group\xa2g1")
    # A later version's event with a field this one does not know still replays,
    # and so do the versions before's.
    newer = BATCH_TWO.replace(b"\x8b\xa4type", b"\x8c\xa5later\xa2g1\xa4type")
    for blob in (newer, BATCH_TWO, BATCH_IDENTITY, BATCH_COMPACT):
        (logged,) = metric_log.decode(blob)
        assert (logged.run_id, logged.run_name, logged.user) == ("r1", "prod-1", "ana")
        assert logged.values == {"loss": 2.0} and logged.group is None
    both = metric_log.decode(metric_log.encode([grouped, metrics({"loss": 3.0}, user="")]))
    assert [(e.group, e.user, e.values) for e in both] == [
        ("g1", "ana", {"loss": 2.0}), (None, "", {"loss": 3.0})]


def test_restore_replays_both_log_forms_in_order():
    """Logged 1 (msgpack, as earlier versions wrote it), +inf (msgpack), 2 (JSON), then
    2 in a batch of whole events and 2 Compact: a restart rebuilds the window from the
    log in that order, whatever form each row took."""
    restored = book(threshold(">", 5, 4, "avg"))
    restored.restore({"runs": [], "windows": [], "flags": [],
                      "log": [("r1", "prod-1", "ana", row)
                              for row in (MSGPACK_ONE, MSGPACK_INF, JSON_TWO)],
                      "batches": [(BATCH_TWO,), (BATCH_COMPACT,)]},
                     {}, 0.0)
    # The rows of earlier versions first, then the batches.
    assert restored.runs["r1"].rings["loss"].values() == [INF, 2.0, 2.0, 2.0]


def test_a_reload_that_widens_the_window_keeps_the_values_and_fires_on_the_new_mean():
    b = book(threshold(">", 10, window=3, agg="avg"))
    assert feed(b, [1.0, 2.0, 3.0, 4.0]) == ([], [])  # calm: the ring keeps no sums
    wider = build(decode(f"""
[[automations]]
name = "a"
scope = "project:acme/vision"
event = {threshold(">", 10, window=5, agg="avg")}
action = {{ kind = "none" }}
cooldown = "0"
"""))
    b.configure(wider.automations)
    ring = b.runs["r1"].rings["loss"]
    assert ring.size == 5 and ring.values() == [2.0, 3.0, 4.0]
    # 2 + 3 + 4 + 20 + 21 = 50, a mean of 10: not above; then 3 + 4 + 20 + 21 + 3 = 51
    assert feed(b, [20.0, 21.0, 3.0]) == ([2], [])


def test_a_reload_that_lowers_the_threshold_fires_on_the_next_value_of_a_calm_ring():
    b = book(threshold(">", 100, window=2, agg="avg"))
    assert feed(b, [5.0] * 6) == ([], [])  # every value calm: the inline push
    lower = build(decode(f"""
[[automations]]
name = "a"
scope = "project:acme/vision"
event = {threshold(">", 4, window=2, agg="avg")}
action = {{ kind = "none" }}
"""))
    b.configure(lower.automations)
    assert feed(b, [5.0]) == ([0], [])


def test_a_reload_judges_the_values_already_in_a_calm_ring_by_the_new_threshold():
    b = book(threshold(">", 100, window=2, agg="avg"))
    assert feed(b, [5.0] * 6) == ([], [])  # calm by 100: the ring keeps no sums
    lower = build(decode(f"""
[[automations]]
name = "a"
scope = "project:acme/vision"
event = {threshold(">", 4, window=2, agg="avg")}
action = {{ kind = "none" }}
"""))
    b.configure(lower.automations)
    # 3.9 is calm by 4, but the 5 before it is not: (5 + 3.9) / 2 > 4 fires.
    assert feed(b, [3.9]) == ([0], [])
