"""One scope's runs: metric rings, crossing flags and cooldowns; pure, no I/O."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from runhook.config.settings import Automation
from runhook.core.events import RunMetrics, RunState
from runhook.evaluate import metric_log
from runhook.evaluate.ring import Ring
from runhook.triggers.crossing import FIRE, SKIP, on_crossing, step
from runhook.triggers.run_filter import RunMatcher
from runhook.triggers.runs import MetricChecker
from runhook.triggers.state import StateChecker, normalize
from runhook.triggers.threshold import ThresholdChecker

# A run that finished or failed keeps its state this long, for late metrics and
# a repeated final state report, before it is evicted.
FINISHED_GRACE_S = 3600.0
ENDED = frozenset({"finished", "failed", "killed"})
# Distinct (run name, user) pairs whose matching automations are remembered; past
# this the memo starts afresh (it only saves the regular expressions' time).
WATCH_CACHE_SIZE = 4096

CLEARED = "CLEARED"  # a Firing's action when its condition turned false again

# An automation watching a metric, with its checker and, for an average over the
# whole ring against a threshold, (threshold, above) for the running-sum test.
Watch = tuple[Automation, MetricChecker, tuple[float, bool] | None]
# What a metric means to one run: its ring's size, the automations watching it,
# and when every one is an average over the whole ring, the bounds of the ring's
# sum between which none of them holds (see `_calm`).
Dispatch = tuple[int, list[Watch], tuple[float, float, float] | None]


class Run:
    __slots__ = (
        "active",
        "ended_at",
        "fired",
        "last_seen",
        "name",
        "rings",
        "run_id",
        "state",
        "user",
        "watch",
        "watch_gen",
    )

    def __init__(self, run_id: str, name: str, user: str, now: float) -> None:
        self.run_id = run_id
        self.name = name
        self.user = user
        self.state: str | None = None
        self.last_seen = now
        self.ended_at: float | None = None
        self.rings: dict[str, Ring] = {}
        self.active: set[str] | None = None   # automations whose condition holds now
        self.fired: dict[str, float] | None = None  # automation -> last firing (cooldown)
        # What each metric means to this run (RunBook.watching of its name and user),
        # valid while watch_gen is the book's configuration generation.
        self.watch: dict[str, Dispatch] = {}
        self.watch_gen = -1


@dataclass(slots=True)
class Firing:
    automation: Automation
    action: str  # FIRE or SKIP
    metric: str | None
    values: list[float]
    description: str  # the condition in words (`${metric_filter}`)
    cooldown_left: float = 0.0


@dataclass(slots=True)
class Outcome:
    """What one event did to the book: firings, and what must be made durable with them."""

    run: Run | None = None
    firings: list[Firing] = field(default_factory=list)
    # (automation name, active, fired_at) rows for the trigger_state table
    flags: list[tuple[str, bool, float | None]] = field(default_factory=list)
    logged: bool = False  # values went into rings: the event joins the metric log
    state_changed: bool = False
    # Conditions that were true and turned false (re-armed), for channels that resolve
    # what they opened (PagerDuty). None, not a list, on the hot path: it is rare.
    cleared: list[Firing] | None = None


# The outcomes of nearly every metric event, shared (callers never change them):
# the run is not watched, or values went into rings and no condition changed.
UNWATCHED = Outcome()
LOGGED = Outcome(logged=True)


def _calm(watches: list[Watch], size: int) -> tuple[float, float, float] | None:
    """(low, high, scale) when every watch is an average over the whole ring: while
    the ring's sum lies in (low, high), farther from both than its drift can reach
    (MARGIN x (the ring's churn + scale)), no condition holds."""
    if any(quick is None for _, _, quick in watches):
        return None
    above = [t * size for _, _, (t, up) in watches if up]  # type: ignore[misc]
    below = [t * size for _, _, (t, up) in watches if not up]  # type: ignore[misc]
    scale = max(abs(t) * size for _, _, (t, _) in watches)  # type: ignore[misc]
    return (max(below, default=-math.inf), min(above, default=math.inf), scale)


def _quick(checker: MetricChecker, ring_size: int) -> tuple[float, bool] | None:
    """(threshold, above) when the checker is an average over the whole ring with
    an ordering comparison: the ring's running sum then decides most values."""
    if not isinstance(checker, ThresholdChecker) or checker.agg != "avg" \
            or checker.size != ring_size or checker.op not in (">", ">=", "<", "<="):
        return None
    return checker.threshold, checker.op in (">", ">=")


class RunBook:
    def __init__(self, automations: list[Automation]) -> None:
        self.runs: dict[str, Run] = {}
        self.dirty: set[str] = set()  # runs whose rings changed since the last checkpoint
        self._gen = 0  # configuration generation: a run's cached dispatch is for one
        self.configure(automations)

    def configure(self, automations: list[Automation]) -> None:
        """Index the run automations; rings are resized lazily to the new sizes."""
        self.by_metric: dict[str, list[tuple[Automation, RunMatcher, MetricChecker]]] = {}
        self.on_state: list[tuple[Automation, RunMatcher, StateChecker]] = []
        self.sizes: dict[str, int] = {}
        # (run_name, user) -> metric -> the automations whose run filter matches:
        # the filters (regular expressions) run once per distinct run name, not per value.
        self._watching: dict[tuple[str, str], dict[str, Dispatch]] = {}
        self._gen += 1  # every run's cached dispatch is stale
        for automation in automations:
            checker = automation.run
            if checker is None or not automation.enabled:
                continue
            if checker.metric is not None:
                metric = checker.metric.metric
                self.by_metric.setdefault(metric, []).append(
                    (automation, checker.matcher, checker.metric))
                self.sizes[metric] = max(self.sizes.get(metric, 0), checker.metric.size)
            elif checker.state is not None:
                self.on_state.append((automation, checker.matcher, checker.state))

    @property
    def tracks_runs(self) -> bool:
        """Whether any automation reads run state (else nothing is kept or restored)."""
        return bool(self.by_metric or self.on_state)

    def forget(self, names: set[str]) -> None:
        """Drop crossing flags and cooldowns of automations whose definition changed."""
        for run in self.runs.values():
            if run.active:
                run.active -= names
            if run.fired:
                for name in names:
                    run.fired.pop(name, None)

    def _run(self, run_id: str, name: str, user: str, now: float) -> Run:
        run = self.runs.get(run_id)
        if run is None:
            run = self.runs[run_id] = Run(run_id, name, user, now)
        run.name, run.user, run.last_seen = name, user, now
        return run

    def watching(self, name: str, user: str) -> dict[str, Dispatch]:
        """metric -> the automations that watch it in runs named `name` by `user`."""
        key = (name, user)
        found = self._watching.get(key)
        if found is None:
            if len(self._watching) >= WATCH_CACHE_SIZE:
                self._watching.clear()
            found = self._watching[key] = {}
            for metric, watches in self.by_metric.items():
                size = self.sizes[metric]
                matching = [(a, checker, _quick(checker, size)) for a, matcher, checker in watches
                            if matcher.matches(name, user)]
                if matching:
                    found[metric] = (size, matching, _calm(matching, size))
        return found

    def metrics(self, event: RunMetrics, now: float) -> Outcome:
        """The hot path: UNWATCHED or LOGGED (shared, never changed) unless a
        condition changed, then an Outcome of its own."""
        name, user = event.run_name, event.user
        run = self.runs.get(event.run_id)
        if run is not None and run.watch_gen == self._gen and run.name == name \
                and run.user == user:
            watch = run.watch
            run.last_seen = now
        else:
            watch = self.watching(name, user)
            if not watch or not any(m in watch for m in event.values):
                return UNWATCHED
            run = self._run(event.run_id, name, user, now)
            run.watch, run.watch_gen = watch, self._gen
        outcome = LOGGED
        logged = False
        rings = run.rings
        for metric, value in event.values.items():
            found = watch.get(metric)
            if found is None or value is None or value != value:  # noqa: PLR0124 - NaN, no call
                continue  # unwatched; NaN and null are not values; ±Infinity takes part
            size, automations, calm = found
            ring = rings.get(metric)
            if ring is None or ring.size != size:
                ring = rings[metric] = Ring(size, ring.values() if ring else ())
            logged = True
            if ring.push(value, None if run.active else calm):
                continue  # no condition holds, none held: the common case
            count = ring.count
            for automation, checker, quick in automations:
                if count < checker.size:
                    continue  # the window is not full: every checker answers None
                active = run.active is not None and automation.name in run.active
                if quick is not None:
                    threshold, above = quick
                    mean = ring.settled_mean(threshold)
                    if mean is not None and (mean > threshold if above else mean < threshold) \
                            == active:
                        continue  # clearly no change: the common case, one division
                window = ring.tail(checker.size)
                holds = checker.holds(window)
                if holds is None or holds == active:
                    continue
                if outcome is LOGGED:
                    outcome = Outcome(run)
                self._step(run, automation, holds, now, outcome, metric, window,
                           checker.description)
        if not logged:
            return UNWATCHED if outcome is LOGGED else outcome
        self.dirty.add(run.run_id)
        if outcome is not LOGGED:
            outcome.logged = True
        return outcome

    def replay(self, run_id: str, name: str, user: str, values: dict[str, float | None],
               now: float) -> None:
        """A logged event's values into the rings, without evaluating (restore)."""
        watch = self.watching(name, user)
        run: Run | None = None
        for metric, value in values.items():
            found = watch.get(metric)
            if found is None or value is None or value != value:  # noqa: PLR0124 - NaN, no call
                continue
            if run is None:
                run = self._run(run_id, name, user, now)
            ring = run.rings.get(metric)
            if ring is None or ring.size != found[0]:
                ring = run.rings[metric] = Ring(found[0], ring.values() if ring else ())
            ring.append(value)
        if run is not None:
            self.dirty.add(run_id)

    def state(self, event: RunState, now: float) -> Outcome:
        outcome = Outcome()
        current = normalize(event.state)
        watching = [(a, checker) for a, matcher, checker in self.on_state
                    if matcher.matches(event.run_name, event.user)]
        if event.run_id not in self.runs and not watching:
            return outcome
        run = outcome.run = self._run(event.run_id, event.run_name, event.user, now)
        previous = run.state
        for automation, checker in watching:
            if checker.fires(previous, current):  # a change is an edge
                self._fire(run, automation, now, outcome, None, [], checker.description)
        if current != previous:
            run.state = current
            run.ended_at = now if current in ENDED else None
            outcome.state_changed = True
            self.dirty.add(run.run_id)
        return outcome

    def _step(self, run: Run, automation: Automation, holds: bool | None, now: float,
              outcome: Outcome, metric: str, values: list[float], description: str) -> None:
        name = automation.name
        before = run.active is not None and name in run.active
        last = run.fired.get(name) if run.fired else None
        after, action = step(before, holds, last, now, automation.cooldown)
        if after == before:
            return
        if after:
            if run.active is None:
                run.active = set()
            run.active.add(name)
        else:
            assert run.active is not None
            run.active.discard(name)
            if outcome.cleared is None:
                outcome.cleared = []
            outcome.cleared.append(Firing(automation, CLEARED, metric, values, description))
        if action is not None:
            self._fire(run, automation, now, outcome, metric, values, description, action)
        else:
            self._flag(outcome, name, after, last)

    def _fire(self, run: Run, automation: Automation, now: float, outcome: Outcome,
              metric: str | None, values: list[float], description: str,
              action: str | None = None) -> None:
        """A crossing: FIRE, or SKIP inside the cooldown."""
        name = automation.name
        last = run.fired.get(name) if run.fired else None
        if (action or on_crossing(last, now, automation.cooldown)) == SKIP:
            assert last is not None  # a skip means an earlier firing
            outcome.firings.append(Firing(automation, SKIP, metric, values, description,
                                          automation.cooldown - (now - last)))
        else:
            if run.fired is None:
                run.fired = {}
            run.fired[name] = last = now
            outcome.firings.append(Firing(automation, FIRE, metric, values, description))
        self._flag(outcome, name, run.active is not None and name in run.active, last)

    @staticmethod
    def _flag(outcome: Outcome, name: str, active: bool, fired_at: float | None) -> None:
        # One row per automation per event: a later change in the same event replaces it.
        outcome.flags = [f for f in outcome.flags if f[0] != name]
        outcome.flags.append((name, active, fired_at))

    def evict(self, now: float, ttl: float) -> list[str]:
        """Forget runs that ended more than an hour ago or were silent for `ttl`."""
        gone = [run_id for run_id, run in self.runs.items()
                if (run.ended_at is not None and now - run.ended_at > FINISHED_GRACE_S)
                or now - run.last_seen > ttl]
        for run_id in gone:
            del self.runs[run_id]
            self.dirty.discard(run_id)
        return gone

    def checkpoint(self) -> list[tuple[Any, ...]]:
        """(run_id, metric, size, bytes) for every ring of the runs changed since last time."""
        rows = []
        for run_id in self.dirty:
            run = self.runs.get(run_id)
            if run is None:
                continue
            for metric, ring in run.rings.items():
                rows.append((run_id, metric, ring.size, ring.to_bytes()))
        self.dirty.clear()
        return rows

    def restore(self, state: dict[str, list[Any]], digests: dict[str, str], now: float) -> None:
        """Rebuild from the database: checkpointed windows, then the values logged
        since (in order), then the flags of automations whose definition is unchanged."""
        for run_id, name, user, run_state, last_seen, ended_at in state["runs"]:
            run = self.runs[run_id] = Run(run_id, name, user, last_seen)
            run.state, run.ended_at = run_state, ended_at
        for run_id, metric, _size, data in state["windows"]:
            if metric in self.sizes:
                self._known(run_id, now).rings[metric] = Ring.from_bytes(self.sizes[metric], data)
        for logged in metric_log.old_rows(state["log"]):
            self.replay(logged.run_id, logged.run_name, logged.user, logged.values, now)
        for (blob,) in state["batches"]:
            for logged in metric_log.decode(blob):
                self.replay(logged.run_id, logged.run_name, logged.user, logged.values, now)
        for run_id, automation, digest, active, fired_at in state["flags"]:
            if digests.get(automation) != digest:
                continue  # its definition changed: start afresh
            run = self._known(run_id, now)
            if active:
                run.active = (run.active or set()) | {automation}
            if fired_at is not None:
                run.fired = {**(run.fired or {}), automation: fired_at}

    def _known(self, run_id: str, now: float) -> Run:
        run = self.runs.get(run_id)
        if run is None:
            run = self.runs[run_id] = Run(run_id, "", "", now)
        return run
