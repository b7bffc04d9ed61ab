"""One run as a scope's book holds it, what an evaluation did to it (Outcome, Firing),
and the crossing steps every kind shares (pure)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from runhook.config.settings import Automation
from runhook.core.identity import Identity
from runhook.evaluate.ring import Ring
from runhook.triggers.crossing import FIRE, SKIP, on_crossing, step

if TYPE_CHECKING:
    from runhook.evaluate.health import Care

CLEARED = "CLEARED"  # a Firing's action when its condition turned false again
# Never a configuration generation: a run whose watch_gen is this takes the slow
# path of RunBook.metrics on every event (its identity or health needs a look).
SLOW = -1


class TrackedRun(Identity):
    """What the daemon remembers of one run it heard about (the client's handle is
    `runhook.training.run.Run`)."""

    __slots__ = (
        "active",
        "care",
        "care_gen",
        "dirty",
        "ended_at",
        "fired",
        "last_seen",
        "reason",
        "rings",
        "state",
        "values_at",
        "watch",
        "watch_gen",
    )

    def __init__(self, run_id: str, name: str, user: str, now: float) -> None:
        super().__init__(run_id, name, user)
        self.state: str | None = None
        self.reason: str | None = None  # why the daemon set the state (crashed: no heartbeat)
        self.last_seen = now  # any event of the run: metrics, state or heartbeat
        self.ended_at: float | None = None
        self.rings: dict[str, Ring] = {}
        # In its book's `dirty` set since the last checkpoint, through RunBook.metrics
        # (which then adds nothing more); other paths add to the set regardless.
        self.dirty = False
        self.active: set[str] | None = None   # automations whose condition holds now
        self.fired: dict[str, float] | None = None  # automation -> last firing (cooldown)
        # What each metric means to this run (RunBook.watching of its identity), and
        # what its health automations need (None: nothing), valid while watch_gen is
        # the book's configuration generation.
        self.watch: dict[str, Any] = {}
        self.care: Care | None = None
        self.care_gen = -1  # the generation watch and care were computed for
        self.watch_gen = SLOW
        # RUN_STALLED: metric ("" for any) -> when a value of it last came, or when the
        # run became running. Only runs a stall automation watches have one.
        self.values_at: dict[str, float] | None = None


@dataclass(slots=True)
class Firing:
    automation: Automation
    action: str  # FIRE or SKIP
    metric: str | None
    values: list[float]
    description: str  # the condition in words (`${metric_filter}`)
    cooldown_left: float = 0.0
    reason: str | None = None  # recorded on the execution (a crash's "no heartbeat for 5m")
    group: dict[str, Any] | None = None  # GROUP_FINISHED: the group's variables
    # A crashed run spoke again: this firing corrects the crash's (PagerDuty: resolve).
    recovery: bool = False


@dataclass(slots=True)
class Outcome:
    """What one evaluation did to the book: firings, and what must be made durable with them."""

    run: TrackedRun | None = None
    firings: list[Firing] = field(default_factory=list)
    # (automation name, active, fired_at) rows for the trigger_state table
    flags: list[tuple[str, bool, float | None]] = field(default_factory=list)
    logged: bool = False  # values went into rings: the event joins the metric log
    state_changed: bool = False  # the run's row (state, identity) must be written
    # Conditions that were true and turned false (re-armed), for channels that resolve
    # what they opened (PagerDuty). None, not a list, on the hot path: it is rare.
    cleared: list[Firing] | None = None
    # A stall's deadline when a timer fired it: names its executions alike on any
    # cluster owner that counts the same deadline (evaluator.expire).
    due: float | None = None


# The outcomes of nearly every metric event, shared (callers never change them):
# the run is not watched, or values went into rings and no condition changed.
UNWATCHED = Outcome()
LOGGED = Outcome(logged=True)


def step_run(run: TrackedRun, automation: Automation, holds: bool | None, now: float,
             outcome: Outcome, metric: str | None, values: list[float],
             description: str) -> None:
    """A condition's new verdict: fire on a crossing, re-arm when it turns false."""
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
        fire_run(run, automation, now, outcome, metric, values, description, action)
    else:
        flag(outcome, name, after, last)


def fire_run(run: TrackedRun, automation: Automation, now: float, outcome: Outcome,
             metric: str | None, values: list[float], description: str,
             action: str | None = None, reason: str | None = None) -> None:
    """A crossing: FIRE, or SKIP inside the cooldown."""
    name = automation.name
    last = run.fired.get(name) if run.fired else None
    if (action or on_crossing(last, now, automation.cooldown)) == SKIP:
        assert last is not None  # a skip means an earlier firing
        outcome.firings.append(Firing(automation, SKIP, metric, values, description,
                                      automation.cooldown - (now - last), reason))
    else:
        if run.fired is None:
            run.fired = {}
        run.fired[name] = last = now
        outcome.firings.append(Firing(automation, FIRE, metric, values, description,
                                      reason=reason))
    flag(outcome, name, run.active is not None and name in run.active, last)


def flag(outcome: Outcome, name: str, active: bool, fired_at: float | None) -> None:
    # One row per automation per evaluation: a later change in the same one replaces it.
    outcome.flags = [f for f in outcome.flags if f[0] != name]
    outcome.flags.append((name, active, fired_at))
