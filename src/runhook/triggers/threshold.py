"""RUN_METRIC_THRESHOLD: the aggregate of a metric's last N values against a threshold."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

from runhook.core.schema import FieldError
from runhook.triggers.aggregate import COMPARISONS, aggregate, canonical, number
from runhook.triggers.run_filter import MetricName, RunFilter, Window


class MetricThreshold(RunFilter, tag="RUN_METRIC_THRESHOLD", kw_only=True, frozen=True):
    """The aggregate of the last `window` values compared with `threshold`."""

    metric: MetricName
    agg: Literal["avg", "average", "mean", "min", "max"] | None = None
    window: Window = 1
    cmp: Literal[">", ">=", "<", "<=", "==", "!="]
    threshold: float


class ThresholdChecker:
    """Holds when agg(last `window` values) `cmp` `threshold`."""

    __slots__ = ("agg", "compare", "comparison", "description", "metric", "op", "size",
                 "threshold")

    def __init__(self, config: MetricThreshold) -> None:
        if config.agg is None and config.window > 1:
            raise FieldError("agg", "give avg, min or max when window > 1")
        self.metric = config.metric
        self.size = config.window
        self.agg = canonical(config.agg or "avg")
        self.op = config.cmp
        self.comparison = COMPARISONS[config.cmp]
        self.compare = self.comparison.holds
        self.threshold = config.threshold
        subject = config.metric if config.window == 1 else \
            f"{self.agg}({config.metric}) over last {config.window}"
        self.description = f"{subject} {config.cmp} {number(config.threshold)}"

    def holds(self, window: Sequence[float]) -> bool | None:
        """Whether the condition holds over the latest values (oldest first); None =
        cannot tell yet. The hot path: nothing is copied (see RunBook.metrics)."""
        if len(window) != self.size:
            if len(window) < self.size:
                return None
            window = window[-self.size:]
        value = aggregate(self.agg, window)
        if math.isnan(value):  # infinities cancelled
            return None
        return self.compare(value, self.threshold)


def from_config(config: MetricThreshold) -> ThresholdChecker:
    return ThresholdChecker(config)
