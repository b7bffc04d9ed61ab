"""The tracking follower's pure parts: what moved, where a history resumes, how points
become events with derived ids, a run's identity, and the source's configuration."""

from __future__ import annotations

import math

import pytest

from runhook.config.model import ConfigError, decode
from runhook.config.settings import build
from runhook.sources import tracking_marks as marks
from runhook.sources.tracking_api import KeyValue, Metric, MlflowRun, RunData, RunInfo, offset_token
from runhook.sources.tracking_marks import MetricMark, RunMark


def run(metrics: list[Metric], tags: dict[str, str] | None = None, status: str = "RUNNING",
        params: dict[str, str] | None = None) -> MlflowRun:
    return MlflowRun(RunInfo("r1", "7", status, "trial", 1000, None),
               RunData(metrics, [KeyValue(k, v) for k, v in (params or {}).items()],
                       [KeyValue(k, v) for k, v in (tags or {}).items()]))


def test_only_metrics_whose_latest_step_or_timestamp_moved_are_read():
    mark = RunMark("RUNNING", None, 0.0, {
        "loss": MetricMark(step=5, timestamp=100), "acc": MetricMark(step=5, timestamp=100),
        "lr": MetricMark(step=5, timestamp=100)})
    shown = run([Metric("loss", 0.1, 100, 5),      # unchanged
                 Metric("acc", 0.9, 101, 5),       # same step, a later timestamp
                 Metric("lr", 0.01, 100, 6),       # a later step
                 Metric("new", 1.0, 90, 0)])       # never read
    assert marks.moved(shown, mark) == ["acc", "lr", "new"]
    assert marks.moved(shown, None) == ["loss", "acc", "lr", "new"]


def test_a_history_resumes_one_point_back_and_checks_that_point():
    mark = MetricMark(count=3, last_timestamp=30, last_step=2)
    assert marks.resume_at(mark) == 2
    assert marks.resume_at(None) == 0
    page = [Metric("loss", 0.3, 30, 2), Metric("loss", 0.2, 40, 3)]
    assert marks.fresh(mark, 2, page) == page[1:]
    # A point inserted before the mark shifted the history: read it from the start.
    assert marks.fresh(mark, 2, [Metric("loss", 0.5, 25, 9), *page]) is None
    # From the start, what sorts after the last point read (timestamp, then step).
    everything = [Metric("loss", 1.0, 10, 0), Metric("loss", 0.5, 25, 9), *page]
    assert marks.fresh(mark, 0, everything) == [page[1]]
    assert marks.fresh(None, 0, everything) == everything
    # MLflow's own page token shape: base64 of {"offset": N}.
    assert offset_token(2) == "eyJvZmZzZXQiOiAyfQ=="


def test_points_become_events_in_step_order_with_the_values_of_a_step_together():
    points = [Metric("acc", 0.5, 12, 1), Metric("loss", 0.9, 10, 1), Metric("loss", 0.8, 20, 2),
              Metric("loss", "NaN", 30, 3), Metric("loss", 0.7, 31, 3),  # twice at step 3
              Metric("loss", 1.0, 5, 0)]
    events = marks.metric_events("src", "acme", "exp", "r1", points)
    assert [(e.step, e.values) for e in events[:3]] == [
        (0, {"loss": 1.0}), (1, {"loss": 0.9, "acc": 0.5}), (2, {"loss": 0.8})]
    # A metric logged twice at one step: two events, no value lost.
    assert events[3].step == 3 and math.isnan(events[3].values["loss"])
    assert (events[4].step, events[4].values) == (3, {"loss": 0.7})
    assert all(e.project == "exp" and e.entity == "acme" for e in events)
    # Ids come from (source, run, step, metric, timestamp): the same points, in any
    # order, give the same ids; another timestamp gives another.
    again = marks.metric_events("src", "acme", "exp", "r1", list(reversed(points)))
    assert [e.id for e in again] == [e.id for e in events]
    assert len({e.id for e in events}) == 5
    assert events[1].id.startswith("mlt:src:r1:1:")
    moved = marks.metric_events("src", "acme", "exp", "r1", [Metric("loss", 0.9, 11, 1)])
    assert moved[0].id != marks.metric_events("src", "acme", "exp", "r1",
                                              [Metric("loss", 0.9, 10, 1)])[0].id


def test_a_run_says_its_name_user_tags_params_and_group():
    shown = run([], tags={"mlflow.user": "ana", "mlflow.parentRunId": "p1", "team": "cv",
                          "mlflow.runName": "trial"}, params={"lr": "0.1"})
    assert marks.identity(shown, "mlflow.parentRunId") == {
        "run_name": "trial", "user": "ana", "group": "p1", "tags": ["team=cv"],
        "config": {"lr": "0.1"}}
    assert marks.identity(shown, None)["group"] is None
    assert marks.identity(shown, "sweep")["group"] is None  # no such tag


def test_statuses_map_to_run_states_with_ids_from_run_and_status():
    ended = MlflowRun(RunInfo("r1", "7", "FAILED", "t", 1000, 2000))
    event = marks.state_event("src", "acme", "exp", ended, "FAILED")
    assert (event.state, event.id) == ("failed", "mlt:src:r1:failed:2000")
    started = marks.state_event("src", "acme", "exp", ended, "RUNNING")
    assert (started.state, started.id) == ("running", "mlt:src:r1:running:1000")
    assert marks.STATES["KILLED"] == "killed"
    assert len(marks.state_id("s" * 300, "r1", "FINISHED", 1)) <= 256


BASE = """
[sources.tracking]
kind = "mlflow-tracking"
entity = "acme"
"""


def problems(body: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        build(decode(BASE + body))
    return caught.value.problems


def test_the_source_is_checked_as_destinations_are():
    assert problems('url = "http://mlflow.internal:5000"') == [
        ("sources.tracking.url: plain http needs allow_http = true on the integration "
        "(https only)")]
    assert problems('url = "https://127.0.0.1:5000"') == [
        ("sources.tracking.url: 127.0.0.1 is a loopback address (set allow_private to "
        "permit it)")]
    assert problems('url = "https://m.example"\ntoken = "T"\ninterval = "0"') == [
        "sources.tracking.interval: expected at least 0.05s",
        "sources.tracking.token: 'T' is not declared under [secrets]"]
    assert problems('url = "https://m.example"\nusername = "U"') == [
        "sources.tracking.username: 'U' is not declared under [secrets]",
        "sources.tracking: `username` and `password` go together"]


def test_the_source_needs_no_listener_and_its_interval_is_in_the_settings(monkeypatch):
    monkeypatch.setenv("MLFLOW_TOKEN", "s3cr3t-token-value")
    settings = build(decode(BASE + """url = "https://m.example/"
token = "TOKEN"
interval = "30s"
[secrets]
TOKEN = { env = "MLFLOW_TOKEN" }
"""))
    source = settings.tracking["tracking"]
    assert (source.url, source.interval, source.authorization) == (
        "https://m.example", 30.0, "Bearer s3cr3t-token-value")
    assert settings.remote is None  # no [ingest] listener needed
    # ${run_url} defaults to the server's run page for the source's entity.
    assert settings.scope("project:acme/fraud").run_url == "https://m.example/#/runs/{run_id}"
    assert settings.scope("project:other/fraud").run_url is None
