"""GROUP_FINISHED: every run of a group (a sweep) is over, and none joined for `settle`."""

from __future__ import annotations

from typing import Literal

from runhook.core.durations import describe
from runhook.core.schema import FieldError
from runhook.triggers.run_filter import MetricName, RunFilter, span

# Run states that count, in a group's summary, as finished and as failed.
FINISHED = frozenset({"finished"})
FAILED = frozenset({"failed", "crashed"})


class GroupFinished(RunFilter, tag="GROUP_FINISHED", kw_only=True, frozen=True):
    """`group` (inherited) picks the groups; the other run filters pick which of their
    runs count. `metric` and `goal` name the best run (by its last logged value)."""

    settle: str = "2m"
    metric: MetricName | None = None
    goal: Literal["minimize", "maximize"] | None = None


class GroupChecker:
    __slots__ = ("description", "goal", "metric", "settle")

    def __init__(self, config: GroupFinished) -> None:
        self.settle = span("settle", config.settle, allow_zero=True)
        if (config.metric is None) != (config.goal is None):
            raise FieldError("goal" if config.metric else "metric",
                             "`metric` and `goal` go together (the best run by that metric)")
        self.metric = config.metric
        self.goal = config.goal
        self.description = (f"every run of the group is over, none joined for "
                            f"{describe(self.settle)}")

    def best(self, values: list[tuple[str, float]]) -> tuple[str, float] | None:
        """The best (run, last value); ties go to the run that joined first."""
        if not values:
            return None
        pick = min if self.goal == "minimize" else max
        return pick(values, key=lambda item: item[1])


def from_config(config: GroupFinished) -> GroupChecker:
    return GroupChecker(config)
