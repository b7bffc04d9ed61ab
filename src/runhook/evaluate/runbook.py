"""One scope's runs: metric rings, crossing flags and cooldowns; pure, no I/O."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import msgspec

from runhook.config.settings import Automation
from runhook.core.events import RunMetrics, RunState
from runhook.evaluate.ring import Ring
from runhook.triggers.crossing import FIRE, SKIP, on_crossing, step
from runhook.triggers.run_filter import RunMatcher
from runhook.triggers.runs import MetricChecker
from runhook.triggers.state import StateChecker, normalize

# A run that finished or failed keeps its state this long, for late metrics and
# a repeated final state report, before it is evicted.
FINISHED_GRACE_S = 3600.0
ENDED = frozenset({"finished", "failed", "killed"})
# Distinct (run name, user) pairs whose matching automations are remembered; past
# this the memo starts afresh (it only saves the regular expressions' time).
WATCH_CACHE_SIZE = 4096

CLEARED = "CLEARED"  # a Firing's action when its condition turned false again

# An automation watching a metric, with its checker: the hot loop reads both.
Watch = tuple[Automation, MetricChecker]


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
    logged: dict[str, float] = field(default_factory=dict)  # watched values appended
    state_changed: bool = False
    # Conditions that were true and turned false (re-armed), for channels that resolve
    # what they opened (PagerDuty). None, not a list, on the hot path: it is rare.
    cleared: list[Firing] | None = None


class RunBook:
    def __init__(self, automations: list[Automation]) -> None:
        self.runs: dict[str, Run] = {}
        self.dirty: set[str] = set()  # runs whose rings changed since the last checkpoint
        self.configure(automations)

    def configure(self, automations: list[Automation]) -> None:
        """Index the run automations; rings are resized lazily to the new sizes."""
        self.by_metric: dict[str, list[tuple[Automation, RunMatcher, MetricChecker]]] = {}
        self.on_state: list[tuple[Automation, RunMatcher, StateChecker]] = []
        self.sizes: dict[str, int] = {}
        # (run_name, user) -> metric -> the automations whose run filter matches:
        # the filters (regular expressions) run once per distinct run name, not per value.
        self._watching: dict[tuple[str, str], dict[str, list[Watch]]] = {}
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

    def watching(self, name: str, user: str) -> dict[str, list[Watch]]:
        """metric -> the automations that watch it in runs named `name` by `user`."""
        key = (name, user)
        found = self._watching.get(key)
        if found is None:
            if len(self._watching) >= WATCH_CACHE_SIZE:
                self._watching.clear()
            found = self._watching[key] = {
                metric: matching for metric, watches in self.by_metric.items()
                if (matching := [(a, checker) for a, matcher, checker in watches
                                 if matcher.matches(name, user)])}
        return found

    def metrics(self, event: RunMetrics, now: float) -> Outcome:
        outcome = Outcome()
        name, user = event.run_name, event.user
        watch = self.watching(name, user)
        watched = [(m, v, watch[m]) for m, v in event.values.items() if m in watch]
        if not watched:
            return outcome
        run = outcome.run = self._run(event.run_id, name, user, now)
        for metric, value, automations in watched:
            if value is None or math.isnan(value):
                continue  # NaN and null are not values: ignored; ±Infinity takes part
            size = self.sizes[metric]
            ring = run.rings.get(metric)
            if ring is None or ring.size != size:
                ring = run.rings[metric] = Ring(size, ring.values() if ring else ())
            ring.append(value)
            outcome.logged[metric] = value
            for automation, checker in automations:
                if ring.count < checker.size:
                    continue  # the window is not full: every checker answers None
                window = ring.tail(checker.size)
                holds = checker.holds(window)
                if holds is None:
                    continue
                active = run.active is not None and automation.name in run.active
                if holds != active:  # no change is the common case: nothing to do
                    self._step(run, automation, holds, now, outcome, metric, window,
                               checker.description)
        if outcome.logged:
            self.dirty.add(run.run_id)
        return outcome

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
        for run_id, name, user, data in state["log"]:
            run = self._run(run_id, name, user, now)
            for metric, value in _unpack(data).items():
                size = self.sizes.get(metric)
                if size is None:
                    continue
                ring = run.rings.get(metric)
                if ring is None:
                    ring = run.rings[metric] = Ring(size)
                ring.append(value)
            self.dirty.add(run_id)
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


_json = msgspec.json.Encoder()
_packer = msgspec.msgpack.Encoder()
_from_json = msgspec.json.Decoder(dict[str, float]).decode


def pack(values: dict[str, float]) -> str | bytes:
    """Logged values as JSON text, which the writer can insert a batch at a time
    (see bulk); msgpack bytes when one is ±Infinity, which JSON cannot carry."""
    text = _json.encode(values)
    if b"null" not in text:  # msgspec writes ±Infinity as null; NaN is never logged
        return text.decode()
    return _packer.encode(values)


def _unpack(data: str | bytes) -> dict[str, float]:
    if isinstance(data, str):
        return _from_json(data)
    return msgspec.msgpack.decode(data, type=dict[str, float])
