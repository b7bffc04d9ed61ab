"""Run health in a scope's book: running and crashed states, heartbeat and stall
deadlines, non-finite values (docs/run-health.md); pure, the clock is always passed in."""

from __future__ import annotations

from collections.abc import Sequence

from runhook.config.settings import Automation
from runhook.core.durations import describe
from runhook.evaluate.groups import GroupBook
from runhook.evaluate.run import SLOW, Firing, Outcome, TrackedRun, fire_run, step_run
from runhook.evaluate.timers import BEAT, STALL
from runhook.triggers.crossing import FIRE
from runhook.triggers.group_finished import GroupChecker
from runhook.triggers.nonfinite import NonFiniteChecker
from runhook.triggers.stalled import StallChecker
from runhook.triggers.state import CRASHED, RUNNING, TERMINAL, StateChecker


class Care:
    """What the health automations watching one identity of run need: built once per
    distinct (name, user, group, tags) and shared by the runs that have it."""

    __slots__ = ("groups", "nonfinite", "slow", "stalls", "states", "timeout")

    def __init__(self, timeout: float, states: list[tuple[Automation, StateChecker]],
                 stalls: list[tuple[Automation, StallChecker]],
                 nonfinite: list[tuple[Automation, NonFiniteChecker]],
                 groups: list[tuple[Automation, GroupChecker]]) -> None:
        self.timeout = timeout  # silent this long while running: crashed
        self.states = states
        self.stalls = stalls
        self.nonfinite = nonfinite
        self.groups = groups
        # Stalls and non-finite values look at every metric event of the run: such
        # runs skip RunBook.metrics' fast path (the others pay nothing per value).
        self.slow = bool(stalls or nonfinite)


def care_for(automations: Sequence[tuple[Automation, object]], run: TrackedRun,
             default_timeout: float) -> Care | None:
    """The Care of `run`'s identity among the health automations, or None when none
    watches it (such a run is never called crashed: nobody would hear of it)."""
    states, stalls, nonfinite, groups = [], [], [], []
    timeouts = []
    for automation, _ in automations:
        checker = automation.run
        assert checker is not None
        if not checker.matcher.matches(run.name, run.user, run.group, run.tags):
            continue
        if checker.state is not None:
            states.append((automation, checker.state))
            if checker.state.watches_crashes:
                timeouts.append(checker.state.timeout or default_timeout)
        elif checker.stall is not None:
            stalls.append((automation, checker.stall))
        elif checker.nonfinite is not None:
            nonfinite.append((automation, checker.nonfinite))
        elif checker.group is not None and run.group:
            groups.append((automation, checker.group))
    if not (states or stalls or nonfinite or groups):
        return None
    # A crash is one fact about the run, declared once: when every automation that
    # asks about crashes has waited as long as it asked, so none hears of a crash
    # before its own timeout (the longest wins).
    return Care(max(timeouts, default=default_timeout), states, stalls, nonfinite, groups)


RECOVERED = "run state becomes running again after a crash"


class HealthBook(GroupBook):
    """RunBook's health half: state changes and the deadlines they arm."""

    # How long the run being evaluated had been silent when it spoke, if it was crashed
    # (set by `seen`, read by `set_state` within the same event).
    _silence = 0.0

    def seen(self, run: TrackedRun, now: float) -> None:
        """An event of the run arrived (the slow path; the fast one never sees a crashed run)."""
        if run.state == CRASHED:
            self._silence = now - run.last_seen
        run.last_seen = now

    def admit(self, run: TrackedRun) -> None:
        """Let the run take the metric fast path only while nothing per event concerns
        its health: no automation cares, or it is running and none looks at values."""
        care = run.care
        run.watch_gen = self._gen if care is None or (not care.slow and run.state == RUNNING) \
            else SLOW

    def set_state(self, run: TrackedRun, state: str, now: float, outcome: Outcome,
                  reason: str | None = None, fire: bool = True) -> None:
        """The run enters `state`: RUN_STATE firings, deadlines armed or dropped."""
        previous = run.state
        care = run.care
        if previous == CRASHED and state == RUNNING:
            reason = f"recovered after {round(self._silence)} s of silence"
            if fire and care is not None:
                self._recovered(run, care, reason, outcome)
        elif fire and care is not None:
            for automation, checker in care.states:
                if checker.fires(previous, state):
                    # The daemon's own verdict says so plainly, not as a state a
                    # client reported ("run state becomes failed" read as if it had).
                    description = f"run crashed: {reason}" if state == CRASHED and reason \
                        else checker.description + (f" ({reason})" if reason else "")
                    fire_run(run, automation, now, outcome, None, [], description,
                             reason=reason)
        if state == previous:
            return
        run.state, run.reason = state, reason
        run.ended_at = now if state in TERMINAL else None
        outcome.state_changed = True
        self.dirty.add(run.run_id)
        if state == RUNNING and care is not None:
            self.timers.arm(BEAT, run.run_id, now + care.timeout)
            if care.stalls:
                run.values_at = dict.fromkeys((c.metric or "" for _, c in care.stalls), now)
                self.timers.arm(STALL, run.run_id, now + min(c.span for _, c in care.stalls))
        elif state != RUNNING:
            self.timers.cancel(BEAT, run.run_id)
            self.timers.cancel(STALL, run.run_id)
        if run.group is not None and (state in TERMINAL) != (previous in TERMINAL):
            self.group_changed(run.group, now)
        self.admit(run)

    def _recovered(self, run: TrackedRun, care: Care, reason: str, outcome: Outcome) -> None:
        """A crashed run spoke again (docs/run-health.md): every automation that fired for the
        crash (its last firing is the crash's instant) fires `running` with how long
        the run was silent, so a false page is corrected; so does one that watches
        `running`. Outside any cooldown: a correction is never held back."""
        for automation, checker in care.states:
            fired = run.fired.get(automation.name) if run.fired else None
            if (fired is not None and fired == run.ended_at) or checker.fires(CRASHED, RUNNING):
                outcome.firings.append(Firing(automation, FIRE, None, [],
                                              f"{RECOVERED} ({reason})", reason=reason,
                                              recovery=True))

    def spoke(self, run: TrackedRun, now: float, outcome: Outcome) -> None:
        """A metric or heartbeat event of a run someone watches: it is running (again)."""
        if run.care is not None and (run.state is None or run.state == CRASHED):
            self.set_state(run, RUNNING, now, outcome)

    def on_values(self, run: TrackedRun, values: dict[str, float | None], now: float,
                  outcome: Outcome) -> None:
        """Stalls that end and non-finite values, for runs whose Care is slow."""
        care = run.care
        assert care is not None
        for automation, stall in care.stalls:
            if not stall.logged(values):
                continue
            if run.values_at is not None:
                run.values_at[stall.metric or ""] = now
            if run.active is not None and automation.name in run.active:
                # Values resumed: armed again, and watched from now (the one push).
                step_run(run, automation, False, now, outcome, None, [], stall.description)
                self.timers.arm(STALL, run.run_id, now + stall.span)
        for automation, checker in care.nonfinite:
            value = values.get(checker.metric)
            holds = checker.holds(value)
            if holds is not None:
                assert value is not None
                step_run(run, automation, holds, now, outcome, checker.metric, [value],
                         checker.description)

    def check_beat(self, run: TrackedRun, now: float) -> Outcome | None:
        """A heartbeat deadline popped: crashed if it still stands, else queued again.
        Time the daemon was down does not count: silence starts at `started` at most."""
        care = run.care
        if care is None or run.state != RUNNING:
            return None
        deadline = max(run.last_seen, self.started) + care.timeout
        if now < deadline:
            self.timers.arm(BEAT, run.run_id, deadline)
            return None
        outcome = Outcome(run)
        self.set_state(run, CRASHED, now, outcome, f"no heartbeat for {describe(care.timeout)}")
        return outcome

    def check_stall(self, run: TrackedRun, now: float) -> Outcome | None:
        """A stall deadline popped: fire the stalls that stand, queue the next one."""
        care = run.care
        if care is None or run.state != RUNNING:
            return None
        outcome = None
        following = None
        for automation, stall in care.stalls:
            if run.active is not None and automation.name in run.active:
                continue  # fired, waiting for values to resume
            since = (run.values_at or {}).get(stall.metric or "", self.started)
            deadline = max(since, self.started) + stall.span
            if now >= deadline:
                if outcome is None:
                    outcome = Outcome(run, due=deadline)
                step_run(run, automation, True, now, outcome, None, [], stall.description)
            elif following is None or deadline < following:
                following = deadline
        if following is not None:
            self.timers.arm(STALL, run.run_id, following)
        return outcome

    def restart_deadlines(self, run: TrackedRun, now: float) -> None:
        """At start: a running run's deadlines count from now (docs/run-health.md)."""
        care = run.care
        if care is None or run.state != RUNNING:
            return
        self.timers.arm(BEAT, run.run_id, now + care.timeout)
        if care.stalls:
            self.timers.arm(STALL, run.run_id, now + min(c.span for _, c in care.stalls))
