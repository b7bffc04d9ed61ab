"""What a tracking follower remembers of each run (its marks) and how what a look read
becomes run events with derived ids (pure: no I/O; tracking.py does the calls)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator

import msgspec

from runhook.core.events import RunMetrics, RunState
from runhook.sources.tracking_api import Metric, MlflowRun

# MLflow's run statuses as runhook's run states; SCHEDULED has not started.
STATES = {"RUNNING": "running", "FINISHED": "finished", "FAILED": "failed", "KILLED": "killed"}
TERMINAL = frozenset({"FINISHED", "FAILED", "KILLED"})
MAX_ID = 256  # the wire's bound on an event id

TrackedEvent = RunMetrics | RunState


class MetricMark(msgspec.Struct, array_like=True):
    """One (run, metric): the latest point runs/search showed when the history was last
    read to its end (`step`, `timestamp`), and how far the history was read: `count`
    points, the last at (`last_timestamp`, `last_step`) in MLflow's order. `ordered`:
    every point read so far had a higher step than the one before it (False in a
    cursor written before it was kept: not known)."""

    step: int = -1
    timestamp: int = -1
    count: int = 0
    last_timestamp: int = -1
    last_step: int = -1
    ordered: bool = False


class RunMark(msgspec.Struct, array_like=True):
    status: str  # MLflow's status, as last turned into an event ("" before any)
    end_time: int | None
    seen: float  # wall seconds of the last look that found the run
    metrics: dict[str, MetricMark] = {}


class Cursor(msgspec.Struct):
    """A source's whole cursor: `since` (ms) is where the next look's search for
    ended runs starts; None before the first look."""

    since: int | None = None
    runs: dict[str, RunMark] = {}


def moved(run: MlflowRun, mark: RunMark | None) -> list[str]:
    """The metrics of `run` whose latest step or timestamp is not what was last read."""
    return [latest.key for latest, _ in _moved(run, mark)]


def _moved(run: MlflowRun, mark: RunMark | None) -> Iterator[tuple[Metric, MetricMark | None]]:
    known = mark.metrics if mark is not None else {}
    for latest in run.data.metrics:
        old = known.get(latest.key)
        if old is None or old.step != latest.step or old.timestamp != latest.timestamp:
            yield latest, old


def readings(run: MlflowRun, mark: RunMark | None) -> list[Reading]:
    """A reading of each metric that moved: done already where the latest point is the
    one new point (next_point), to be read from the history otherwise."""
    run_id = run.info.run_id
    return [Reading.known(run_id, latest.key, old, latest)
            if old is not None and next_point(old, latest)
            else Reading(run_id, latest.key, old) for latest, old in _moved(run, mark)]


def next_point(mark: MetricMark | None, latest: Metric) -> bool:
    """Whether `latest`, the point runs/search shows, is the one point logged since the
    history was read to `mark`, so no history call is needed: the series logged each
    step once, in order, so far, and its latest step moved by exactly one, with a
    timestamp not before the last (so it sorts after it in MLflow's order). A larger
    gap, a timestamp moved without a step, or a series that ever repeated or went back
    a step is read from its history: those can hide points runs/search does not show."""
    return (mark is not None and mark.ordered and mark.count > 0
            and latest.step == mark.step + 1 and latest.timestamp >= mark.timestamp
            and (mark.last_step, mark.last_timestamp) == (mark.step, mark.timestamp))


def resume_at(mark: MetricMark | None) -> int:
    """The history offset to read from: one point back, to see that the last point
    read is still where it was (0 for a metric never read)."""
    return max(mark.count - 1, 0) if mark is not None else 0


def fresh(mark: MetricMark | None, offset: int, page: list[Metric]) -> list[Metric] | None:
    """The points of a page read at `offset` that are new, or None when the history
    moved under the mark (a point inserted before it) and must be read from the start."""
    if mark is None or mark.count == 0:
        return page
    if offset == 0:  # read from the start: whatever sorts after the last point read
        last = (mark.last_timestamp, mark.last_step)
        return [p for p in page if (p.timestamp, p.step) > last]
    if not page or (page[0].timestamp, page[0].step) != (mark.last_timestamp, mark.last_step):
        return None
    return page[1:]


def point_id(source: str, run_id: str, step: int, points: Iterable[Metric]) -> str:
    """An event's id, from (source, run, step) and each of its points' (metric,
    timestamp): the same points make the same id, so a resend is a duplicate."""
    digest = hashlib.blake2b(digest_size=10)
    for p in sorted(points, key=lambda p: (p.key, p.timestamp)):
        digest.update(f"{p.key}\0{p.timestamp}\n".encode())
    return _bounded(f"mlt:{source}:{run_id}:{step}:{digest.hexdigest()}")


def state_id(source: str, run_id: str, status: str, at: int) -> str:
    return _bounded(f"mlt:{source}:{run_id}:{status.lower()}:{at}")


def _bounded(event_id: str) -> str:
    if len(event_id) <= MAX_ID:
        return event_id
    return "mlt:" + hashlib.blake2b(event_id.encode(), digest_size=32).hexdigest()


def identity(run: MlflowRun, group_tag: str | None) -> dict[str, object]:
    """The run's identity fields as a run event carries them: name, user
    (`mlflow.user`), tags as `key=value` (MLflow's own `mlflow.*` left out), params as
    config, and the group from `group_tag`."""
    tags = {t.key: t.value for t in run.data.tags}
    return {"run_name": run.info.run_name or tags.get("mlflow.runName", ""),
            "user": tags.get("mlflow.user", ""),
            "group": (tags.get(group_tag) or None) if group_tag else None,
            "tags": sorted(f"{k}={v}" for k, v in tags.items() if not k.startswith("mlflow.")),
            "config": {p.key: p.value for p in run.data.params}}


def metric_events(source: str, entity: str, project: str, run_id: str,
                  points: list[Metric]) -> list[RunMetrics]:
    """Points as run.metrics events in step order, the values of one step together
    (a metric logged twice at one step starts a new event: no value is lost)."""
    events: list[RunMetrics] = []
    group: list[Metric] = []

    def close() -> None:
        if group:
            events.append(RunMetrics(
                entity=entity, project=project, run_id=run_id, step=group[0].step,
                id=point_id(source, run_id, group[0].step, group),
                values={p.key: p.number for p in group}))

    keys: set[str] = set()
    for point in sorted(points, key=lambda p: (p.step, p.timestamp)):
        if group and (point.step != group[0].step or point.key in keys):
            close()
            group, keys = [], set()
        group.append(point)
        keys.add(point.key)
    close()
    return events


def state_event(source: str, entity: str, project: str, run: MlflowRun, status: str) -> RunState:
    at = run.info.end_time if status in TERMINAL and run.info.end_time else run.info.start_time
    return RunState(entity=entity, project=project, run_id=run.info.run_id,
                    state=STATES[status],  # type: ignore[arg-type]
                    id=state_id(source, run.info.run_id, status, at))


def with_identity(event: TrackedEvent, fields: dict[str, object]) -> TrackedEvent:
    """`event` carrying the run's identity (the first event of a run in each look)."""
    return msgspec.structs.replace(event, **fields)


class Reading:
    """One (run, metric) history being read over a look's rounds: where the next page
    starts, the new points so far, the mark advanced past them, and whether it is done."""

    __slots__ = ("done", "filtered", "first", "key", "mark", "new", "offset", "points",
                 "run_id")

    def __init__(self, run_id: str, key: str, mark: MetricMark | None) -> None:
        self.run_id, self.key, self.mark = run_id, key, mark
        self.offset = resume_at(mark)
        # Read from 0 with a mark: every page keeps only what sorts after its last point.
        self.filtered = self.offset == 0 and mark is not None and mark.count > 0
        self.first = True
        self.points: list[Metric] = []
        self.new = MetricMark(ordered=True) if mark is None else msgspec.structs.replace(mark)
        self.done = False

    @classmethod
    def known(cls, run_id: str, key: str, mark: MetricMark, latest: Metric) -> Reading:
        """A reading done without a history call: `latest` is the one new point (see
        next_point); the mark moves past it as if the history had been read."""
        reading = cls(run_id, key, mark)
        reading.points.append(latest)
        reading.new.count = mark.count + 1
        reading.new.last_timestamp, reading.new.last_step = latest.timestamp, latest.step
        reading.done = True
        return reading

    def take(self, page: list[Metric], more: bool) -> int:
        """Take the page read at `offset`; returns how many points it held."""
        new_points = fresh(self.mark, 0, page) if self.filtered else page
        if self.first and self.filtered and self.mark is not None and page and (
                page[0].timestamp, page[0].step) != (self.mark.last_timestamp,
                                                     self.mark.last_step):
            self.new.ordered = False  # the history moved under the mark
        if self.first and not self.filtered:
            new_points = fresh(self.mark, self.offset, page)
            if new_points is None:  # points were inserted before the mark: from the start
                self.offset, self.filtered, self.new.ordered = 0, True, False
                return len(page)
        assert new_points is not None
        self.first = False
        if self.new.ordered:
            last = self.new.last_step if self.new.count else None
            for point in new_points:
                if last is not None and point.step <= last:
                    self.new.ordered = False  # a repeated or earlier step: always read
                    break
                last = point.step
        self.points.extend(new_points)
        self.offset += len(page)
        self.new.count = self.offset
        if page:
            self.new.last_timestamp, self.new.last_step = page[-1].timestamp, page[-1].step
        self.done = not more or not page
        return len(page)


def run_events(source: str, entity: str, project: str, group_tag: str | None, run: MlflowRun,
               mark: RunMark | None, readings: list[Reading], now: float
               ) -> tuple[list[TrackedEvent], RunMark, bool]:
    """A run's events from one look (running first when first seen or back, its new
    points in step order, its end after them once every history is read), its new mark,
    and whether everything it showed was read."""
    info = run.info
    status = info.status
    before = mark.status if mark is not None else ""
    metrics = dict(mark.metrics) if mark is not None else {}
    head: list[TrackedEvent] = []
    if before != status and (before == "" or status == "RUNNING"):
        head.append(state_event(source, entity, project, run, "RUNNING"))
    latest = {m.key: m for m in run.data.metrics}
    points: list[Metric] = []
    done = True
    for reading in readings:
        points.extend(reading.points)
        if reading.done:  # read to its end: its latest is what runs/search showed
            reading.new.step = latest[reading.key].step
            reading.new.timestamp = latest[reading.key].timestamp
        done = done and reading.done
        metrics[reading.key] = reading.new
    events: list[TrackedEvent] = [
        *head, *metric_events(source, entity, project, info.run_id, points)]
    shown = "RUNNING" if head or before == "RUNNING" else before
    if status in TERMINAL and status != before and done:
        events.append(state_event(source, entity, project, run, status))
        shown = status
    if events:
        events[0] = with_identity(events[0], identity(run, group_tag))
    return events, RunMark(shown, info.end_time, now, metrics), done
