"""One scope's runs: metric rings, crossing flags, cooldowns, health and groups; pure, no I/O."""

from __future__ import annotations

import math
from typing import Any

from runhook.config.settings import Automation, ScopeSettings
from runhook.core.bounds import too_many_runs
from runhook.core.events import RunEvent, RunHeartbeat, RunMetrics, RunState
from runhook.core.identity import restore_identity
from runhook.evaluate import metric_log
from runhook.evaluate.calm import Dispatch, dispatch, kept_only
from runhook.evaluate.groups import Group
from runhook.evaluate.health import Care, HealthBook, care_for
from runhook.evaluate.ring import Ring
from runhook.evaluate.run import LOGGED, UNWATCHED, Firing, Outcome, TrackedRun, step_run
from runhook.evaluate.timers import BEAT, SETTLE, STALL, Key, Timers
from runhook.triggers.group_finished import GroupChecker
from runhook.triggers.run_filter import RunMatcher
from runhook.triggers.runs import MetricChecker, RunChecker
from runhook.triggers.state import normalize

# A run that finished or failed keeps its state this long, for late metrics and
# a repeated final state report, before it is evicted.
FINISHED_GRACE_S = 3600.0
# Distinct run identities (name, user, group, tags) whose matching automations are
# remembered; past this the memo starts afresh (it only saves the filters' time).
WATCH_CACHE_SIZE = 4096

class RunBook(HealthBook):
    def __init__(self, automations: list[Automation], settings: ScopeSettings | None = None,
                 now: float = 0.0) -> None:
        self.runs: dict[str, TrackedRun] = {}
        self.dirty: set[str] = set()  # runs whose rings changed since the last checkpoint
        self._gen = 0  # configuration generation: a run's cached dispatch is for one
        self.timers = Timers()  # every deadline of the scope (health.py, groups.py)
        self.groups: dict[str, Group] = {}
        # Silence before this (the daemon's start) does not count (docs/run-health.md).
        self.started = now
        self.settings = settings or ScopeSettings()
        self.configure(automations)

    def configure(self, automations: list[Automation],
                  settings: ScopeSettings | None = None) -> None:
        """Index the run automations; each run's rings are resized to the new sizes."""
        if settings is not None:
            self.settings = settings
        self.by_metric: dict[str, list[tuple[Automation, RunMatcher, MetricChecker]]] = {}
        # RUN_STATE, RUN_STALLED, RUN_METRIC_NONFINITE and GROUP_FINISHED (health.Care).
        self.health: list[tuple[Automation, RunChecker]] = []
        self.on_group: list[tuple[Automation, GroupChecker]] = []
        self.sizes: dict[str, int] = {}
        # TrackedRun identity -> (metric -> the automations whose run filter matches, Care):
        # the filters (regular expressions) run once per distinct identity, not per value.
        self._watching: dict[tuple[Any, ...], tuple[dict[str, Dispatch], Care | None]] = {}
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
                continue
            self.health.append((automation, checker))
            if checker.group is not None:
                self.on_group.append((automation, checker.group))
                if checker.group.metric is not None:  # its last value names the best run
                    self.sizes.setdefault(checker.group.metric, 1)
        for run in self.runs.values():
            self.attach(run)

    @property
    def tracks_runs(self) -> bool:
        """Whether any automation reads run state (else nothing is kept or restored)."""
        return bool(self.by_metric or self.health)

    def forget(self, names: set[str]) -> None:
        """Drop crossing flags and cooldowns of automations whose definition changed."""
        for run in self.runs.values():
            if run.active:
                run.active -= names
            if run.fired:
                for name in names:
                    run.fired.pop(name, None)
        for group in self.groups.values():
            for name in names:
                group.fired.pop(name, None)

    def profile(self, run: TrackedRun) -> tuple[dict[str, Dispatch], Care | None]:
        """What a run with this identity means here: metric -> the automations that
        watch it, and what its health automations need."""
        key = run.key
        found = self._watching.get(key)
        if found is None:
            if len(self._watching) >= WATCH_CACHE_SIZE:
                self._watching.clear()
            name, user, group, tags = key
            watch: dict[str, Dispatch] = {}
            for metric, watches in self.by_metric.items():
                size = self.sizes[metric]
                matching = [(a, checker) for a, matcher, checker in watches
                            if matcher.matches(name, user, group, tags)]
                if matching:
                    watch[metric] = dispatch(size, matching)
            care = care_for(self.health, run, self.settings.heartbeat_timeout) \
                if self.health else None
            for automation, checker in care.groups if care else ():
                if checker.metric is not None and checker.metric not in watch:
                    watch[checker.metric] = kept_only(self.sizes[checker.metric])
            found = self._watching[key] = (watch, care)
        return found

    def attach(self, run: TrackedRun) -> None:
        """Give the run what its identity means under the current configuration."""
        run.watch, run.care = self.profile(run)
        run.care_gen = self._gen
        for metric, ring in run.rings.items():
            found = run.watch.get(metric)
            low, high = (math.inf, -math.inf) if found is None else (found[3], found[4])
            if found is not None and ring.size != found[0]:  # the hot path never looks
                ring = run.rings[metric] = Ring(found[0], ring.values())
            elif (ring.low, ring.high) != (low, high):
                ring.rearm()  # its values were calm by other bounds
            # No longer watched: never calm, and the slow path skips it.
            ring.low, ring.high = low, high
        self.admit(run)
        if run.care is not None and run.state == "running":
            # A health automation added by a reload starts watching running runs now.
            self.timers.arm(BEAT, run.run_id,
                            max(run.last_seen, self.started) + run.care.timeout)

    def _arrive(self, event: RunEvent, now: float) -> tuple[TrackedRun | None, bool]:
        """The slow half of every run event: the run (None when nothing here watches
        it), its identity updated, and whether that changed (its row is written)."""
        run = self.runs.get(event.run_id)
        previous = None
        if run is None:
            run = TrackedRun(event.run_id, "", "", now)
            run.learn(event)
            watch, care = self.profile(run)
            if care is None and not (any(m in watch for m in event.values)
                                     if isinstance(event, RunMetrics) else watch):
                # Nothing here reads it (a metric event: none of its values): not kept.
                return None, False
            if len(self.runs) >= self.settings.max_runs:
                raise too_many_runs(event.run_id, len(self.runs))  # nothing changed yet
            self.runs[event.run_id] = run
            changed = True
        else:
            previous = run.group
            changed = run.learn(event)
        self.seen(run, now)
        if changed or run.care_gen != self._gen:
            self.attach(run)
        if changed:
            self.dirty.add(run.run_id)
            if run.group != previous:
                self.join(run, previous, now)
        return run, changed

    def metrics(self, event: RunMetrics, now: float) -> Outcome:
        """The hot path: UNWATCHED or LOGGED (shared, never changed) unless a
        condition or the run changed, then an Outcome of its own."""
        name, user = event.run_name, event.user
        run = self.runs.get(event.run_id)
        if run is not None and run.watch_gen == self._gen and (run.name == name or not name) \
                and (run.user == user or not user) and event.group is None \
                and event.tags is None and event.config is None:
            watch = run.watch
            run.last_seen = now  # the heartbeat deadline is checked when it pops
            outcome = LOGGED
        else:
            found, changed = self._arrive(event, now)
            if found is None:
                return UNWATCHED
            run = found
            outcome = Outcome(run, state_changed=True) if changed else LOGGED
            if run.care is not None:
                if outcome is LOGGED:
                    outcome = Outcome(run)
                self.spoke(run, now, outcome)
                if run.care.slow:
                    self.on_values(run, event.values, now, outcome)
            watch = run.watch
        logged = False
        rings = run.rings
        held = run.active  # while a condition holds, every value is evaluated
        for metric, value in event.values.items():
            ring = rings.get(metric)
            if ring is not None and not held and value is not None \
                    and ring.low < value < ring.high and ring.quiet >= ring.size:
                # The common case, Ring.push's cheapest, inline (a call costs as much):
                # the value and every value in the ring are calm, no sum is kept.
                at = ring.start
                ring.buf[at] = value
                at += 1
                ring.start = at if at < ring.size else 0
                logged = True
                continue
            found_ = watch.get(metric)
            if found_ is None or value is None or value != value:  # noqa: PLR0124 - NaN
                continue  # unwatched; NaN and null are not values; ±Infinity takes part
            size, automations, calm, low, high = found_
            if ring is None:
                ring = rings[metric] = Ring(size)  # (attach resized the others)
                ring.low, ring.high = low, high
            logged = True
            if ring.push(value, None if held else calm):
                continue  # no condition holds, none held
            count = ring.count
            for automation, checker, quick in automations:
                if count < checker.size:
                    continue  # the window is not full: every checker answers None
                active = run.active is not None and automation.name in run.active
                if quick is not None:
                    # A settled mean is farther from the threshold than the sum's
                    # drift: the comparison itself decides it, as it would the exact one.
                    threshold, holds_at, _ = quick
                    mean = ring.settled_mean(threshold)
                    if mean is not None and holds_at(mean, threshold) == active:
                        continue  # clearly no change: the common case, one division
                window = ring.tail(checker.size)
                holds = checker.holds(window)
                if holds is None or holds == active:
                    continue
                if outcome is LOGGED:
                    outcome = Outcome(run)
                step_run(run, automation, holds, now, outcome, metric, window,
                         checker.description)
                held = run.active
        if not logged:
            return UNWATCHED if outcome is LOGGED else outcome
        if not run.dirty:
            run.dirty = True
            self.dirty.add(run.run_id)
        if outcome is not LOGGED:
            outcome.logged = True
        return outcome

    def heartbeat(self, event: RunHeartbeat, now: float) -> Outcome:
        """The run is alive: last-seen refreshed (O(1), no timer pushed)."""
        run, changed = self._arrive(event, now)
        if run is None:
            return UNWATCHED
        outcome = Outcome(run, state_changed=changed)
        self.spoke(run, now, outcome)
        return outcome

    def state(self, event: RunState, now: float) -> Outcome:
        run, changed = self._arrive(event, now)
        if run is None:
            return Outcome()
        outcome = Outcome(run, state_changed=changed)
        self.set_state(run, normalize(event.state), now, outcome, event.reason or None)
        return outcome

    def replay(self, logged: metric_log.Logged, now: float) -> None:
        """A logged event's values into the rings, without evaluating (restore)."""
        run = self.runs.get(logged.run_id)
        if run is None:
            probe = TrackedRun(logged.run_id, "", "", now)
            probe.learn(logged)
            watch = self.profile(probe)[0]
            if not any(m in watch and v is not None and v == v  # noqa: PLR0124 - NaN
                       for m, v in logged.values.items()):
                return
            run = self.runs[logged.run_id] = probe
        elif run.learn(logged):
            run.care_gen = -1
        watch = self.profile(run)[0]
        for metric, value in logged.values.items():
            found = watch.get(metric)
            if found is None or value is None or value != value:  # noqa: PLR0124 - NaN, no call
                continue
            ring = run.rings.get(metric)
            if ring is None or ring.size != found[0]:
                ring = run.rings[metric] = Ring(found[0], ring.values() if ring else ())
            ring.append(value)
        self.dirty.add(run.run_id)

    def next_deadline(self) -> float | None:
        return self.timers.next()

    def expire(self, now: float, others: list[Key] | None = None
               ) -> tuple[list[Outcome], list[Firing]]:
        """Evaluate the deadlines that passed: a run's outcomes (crashed, stalled) and
        the GROUP_FINISHED firings (their group's `fired` already set). Timers of
        kinds the book does not own (digests closing) go to `others`."""
        outcomes: list[Outcome] = []
        groups: list[Firing] = []
        for kind, key in self.timers.due(now):
            if kind == SETTLE:
                groups.extend(self.check_group(key, now))
                continue
            if kind not in (BEAT, STALL):
                if others is not None:
                    others.append((kind, key))
                continue
            run = self.runs.get(key)
            if run is None:
                continue
            if run.care_gen != self._gen:
                self.attach(run)
            outcome = self.check_beat(run, now) if kind == BEAT else \
                self.check_stall(run, now) if kind == STALL else None
            if outcome is not None:
                outcomes.append(outcome)
        return outcomes, groups

    def evict(self, now: float, ttl: float) -> list[str]:
        """Forget runs that ended more than an hour ago (unless their group still
        waits for its GROUP_FINISHED) or were silent for `ttl`."""
        gone = [run_id for run_id, run in self.runs.items()
                if (run.ended_at is not None and now - run.ended_at > FINISHED_GRACE_S
                    and not self.pending(run))
                or now - run.last_seen > ttl]
        for run_id in gone:
            run = self.runs.pop(run_id)
            self.dirty.discard(run_id)
            for kind in (BEAT, STALL):
                self.timers.cancel(kind, run_id)
            group = self.groups.get(run.group) if run.group is not None else None
            if group is not None:
                group.members.pop(run_id, None)
                if not group.members:
                    del self.groups[group.name]
        return gone

    def checkpoint(self) -> list[tuple[Any, ...]]:
        """(run_id, metric, size, bytes) for every ring of the runs changed since last time."""
        rows = []
        for run_id in self.dirty:
            run = self.runs.get(run_id)
            if run is None:
                continue
            run.dirty = False
            for metric, ring in run.rings.items():
                rows.append((run_id, metric, ring.size, ring.to_bytes()))
        self.dirty.clear()
        return rows

    def restore(self, state: dict[str, list[Any]], digests: dict[str, str], now: float) -> None:
        """Rebuild from the database: runs, checkpointed windows, then the values logged
        since (in order), then the flags of automations whose definition is unchanged;
        every running run's deadlines count from `now` (the daemon's start)."""
        self.started = now
        for run_id, name, user, run_state, last_seen, ended_at, group, tags, config, reason \
                in state["runs"]:
            run = self.runs[run_id] = TrackedRun(run_id, name, user, last_seen)
            run.state, run.ended_at, run.reason = run_state, ended_at, reason
            restore_identity(run, group, tags, config)
        for run_id, metric, _size, data in state["windows"]:
            if metric in self.sizes:
                self._known(run_id, now).rings[metric] = Ring.from_bytes(self.sizes[metric], data)
        for logged in metric_log.old_rows(state["log"]):
            self.replay(logged, now)
        for (blob,) in state["batches"]:
            for logged in metric_log.decode(blob):
                self.replay(logged, now)
        for run_id, automation, digest, active, fired_at in state["flags"]:
            if digests.get(automation) != digest:
                continue  # its definition changed: start afresh
            run = self._known(run_id, now)
            if active:
                run.active = (run.active or set()) | {automation}
            if fired_at is not None:
                run.fired = {**(run.fired or {}), automation: fired_at}
        for group_name, automation, digest, fired_at in state.get("groups", ()):
            if digests.get(automation) == digest:
                self.groups.setdefault(group_name, Group(group_name, now)) \
                    .fired[automation] = fired_at
        for run in self.runs.values():
            self.attach(run)
            if run.group is not None and run.care is not None and run.care.groups:
                group = self.groups.setdefault(run.group, Group(run.group, now))
                group.members[run.run_id] = None
            self.restart_deadlines(run, now)
        for name in self.groups:
            self.group_changed(name, now)

    def _known(self, run_id: str, now: float) -> TrackedRun:
        run = self.runs.get(run_id)
        if run is None:
            run = self.runs[run_id] = TrackedRun(run_id, "", "", now)
        return run

