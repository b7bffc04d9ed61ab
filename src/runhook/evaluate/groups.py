"""Groups of runs (sweeps) in a scope's book, and GROUP_FINISHED's settling (pure)."""

from __future__ import annotations

import math
from typing import Any

from runhook.config.settings import Automation
from runhook.evaluate.run import Firing, TrackedRun
from runhook.evaluate.timers import SETTLE, Timers
from runhook.triggers.crossing import FIRE
from runhook.triggers.group_finished import FAILED, FINISHED, GroupChecker
from runhook.triggers.state import TERMINAL


class Group:
    __slots__ = ("fired", "joined_at", "members", "name")

    def __init__(self, name: str, now: float) -> None:
        self.name = name
        self.members: dict[str, None] = {}  # run ids in join order (ties of "best" go first)
        self.joined_at = now  # when the last run joined
        self.fired: dict[str, float] = {}  # automation -> when it fired (once per group)


class GroupBook:
    """The groups half of RunBook; RunBook sets these attributes."""

    runs: dict[str, TrackedRun]
    timers: Timers
    started: float
    groups: dict[str, Group]
    on_group: list[tuple[Automation, GroupChecker]]
    dirty: set[str]
    _gen: int

    def join(self, run: TrackedRun, previous: str | None, now: float) -> None:
        """`run` (whose Care watches groups) is in run.group, and no longer in `previous`."""
        if previous is not None and previous != run.group:
            old = self.groups.get(previous)
            if old is not None:
                old.members.pop(run.run_id, None)
                self.group_changed(previous, now)
        if run.group is None or run.care is None or not run.care.groups:
            return
        group = self.groups.get(run.group)
        if group is None:
            group = self.groups[run.group] = Group(run.group, now)
        if run.run_id not in group.members:
            group.members[run.run_id] = None
            group.joined_at = now
            self.group_changed(run.group, now)

    def _watchers(self, group: Group) -> list[tuple[Automation, GroupChecker]]:
        """The GROUP_FINISHED automations whose `group` filter takes this group and
        that have not fired for it."""
        out = []
        for automation, checker in self.on_group:
            if automation.name in group.fired:
                continue
            pattern = automation.run.matcher.group if automation.run else None
            if pattern is None or pattern.search(group.name):
                out.append((automation, checker))
        return out

    def _members(self, group: Group, automation: Automation) -> list[TrackedRun]:
        matcher = automation.run.matcher if automation.run else None
        out = []
        for run_id in group.members:
            run = self.runs.get(run_id)
            if run is not None and (matcher is None or matcher.matches(
                    run.name, run.user, run.group, run.tags)):
                out.append(run)
        return out

    def group_changed(self, name: str, now: float) -> None:
        """A run joined, left, ended or came back: queue the settling of each watcher
        for which every run is now over (its own check decides when it pops)."""
        group = self.groups.get(name)
        if group is None:
            return
        settle = None
        for automation, checker in self._watchers(group):
            members = self._members(group, automation)
            if members and all(run.state in TERMINAL for run in members):
                settle = checker.settle if settle is None else min(settle, checker.settle)
        if settle is not None:
            self.timers.arm(SETTLE, name, max(group.joined_at, self.started) + settle)

    def check_group(self, name: str, now: float) -> list[Firing]:
        """A settle deadline popped: GROUP_FINISHED fires for each watcher whose runs
        are all over with none joined for `settle`; the others wait again."""
        group = self.groups.get(name)
        if group is None:
            return []
        out = []
        following = None
        since = max(group.joined_at, self.started)
        for automation, checker in self._watchers(group):
            members = self._members(group, automation)
            if not members or not all(run.state in TERMINAL for run in members):
                continue  # a run that ends queues the settling again
            if now < since + checker.settle:
                following = since + checker.settle if following is None \
                    else min(following, since + checker.settle)
                continue
            group.fired[automation.name] = now
            out.append(Firing(automation, FIRE, checker.metric, [], checker.description,
                              group=summary(group.name, members, checker)))
        if following is not None:
            self.timers.arm(SETTLE, name, following)
        return out

    def pending(self, run: TrackedRun) -> bool:
        """Whether the run's group still waits for a GROUP_FINISHED (keep its runs)."""
        group = self.groups.get(run.group) if run.group is not None else None
        return group is not None and bool(self._watchers(group))


def summary(name: str, members: list[TrackedRun], checker: GroupChecker) -> dict[str, Any]:
    """The group's variables: counts, and the best run by its last logged value.

    Only runs that finished can be best, and only by a finite value: a run that
    failed or crashed (often because its loss went NaN or diverged) is no winner."""
    values = []
    if checker.metric is not None:
        for run in members:
            ring = run.rings.get(checker.metric)
            if run.state not in FINISHED or ring is None or not ring.count:
                continue
            last = ring.tail(1)[0]
            if math.isfinite(last):
                values.append((run.name or run.run_id, last))
    best = checker.best(values)
    return {
        "group": name,
        "group_runs": len(members),
        "group_finished": sum(run.state in FINISHED for run in members),
        "group_failed": sum(run.state in FAILED for run in members),
        "group_best_run": best[0] if best else "",
        "group_best_value": best[1] if best else "",
    }
