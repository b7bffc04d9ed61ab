"""RUN_METRIC_CHANGE: the current window's aggregate against the prior window's."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Annotated, Literal

import msgspec

from runhook.triggers.aggregate import aggregate, canonical, direction_holds, number
from runhook.triggers.run_filter import MetricName, RunFilter, Window


class MetricChange(RunFilter, tag="RUN_METRIC_CHANGE", kw_only=True, frozen=True):
    """agg(last `window`) against agg(the `prior_window` values just before them)."""

    metric: MetricName
    agg: Literal["avg", "average", "mean", "min", "max"] = "avg"
    window: Window = 1
    prior_window: Window | None = None
    change: Literal["absolute", "relative"] = "absolute"
    direction: Literal["increase", "decrease", "any"] = "any"
    amount: Annotated[float, msgspec.Meta(gt=0)]


class ChangeChecker:
    """Holds when agg(last `window`) moved by `amount` from agg(the `prior_window` before)."""

    __slots__ = (
        "agg",
        "amount",
        "description",
        "direction",
        "metric",
        "prior",
        "relative",
        "size",
        "window",
    )

    def __init__(self, config: MetricChange) -> None:
        self.metric = config.metric
        self.agg = canonical(config.agg)
        self.window = config.window
        self.prior = config.prior_window or config.window
        self.size = self.window + self.prior
        self.relative = config.change == "relative"
        self.direction = config.direction
        self.amount = config.amount
        verb = {"increase": "rose", "decrease": "fell", "any": "changed"}[config.direction]
        amount = f"{number(config.amount * 100)}%" if self.relative else number(config.amount)
        self.description = (f"{self.agg}({config.metric}) over last {self.window} {verb} by at "
                            f"least {amount} vs the {self.prior} before")

    def holds(self, window: Sequence[float]) -> bool | None:
        """Whether the condition holds over the latest values (oldest first); None =
        cannot tell: too few values, or no change to measure."""
        if len(window) < self.size:
            return None
        values = window[-self.size:]
        prior = aggregate(self.agg, values[:self.prior])
        current = aggregate(self.agg, values[self.prior:])
        if self.relative:
            if prior == 0:
                return None  # a change relative to zero has no size: cannot tell
            delta = (current - prior) / abs(prior)
        else:
            delta = current - prior
        if math.isnan(delta):
            return None
        return direction_holds(self.direction, delta, self.amount)


def from_config(config: MetricChange) -> ChangeChecker:
    return ChangeChecker(config)
