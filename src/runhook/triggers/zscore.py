"""RUN_METRIC_ZSCORE: a new value's distance from the recent mean, in standard deviations."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Annotated, Literal

import msgspec

from runhook.triggers.aggregate import aggregate, direction_holds, number
from runhook.triggers.run_filter import MetricName, RunFilter


class MetricZScore(RunFilter, tag="RUN_METRIC_ZSCORE", kw_only=True, frozen=True):
    """A new value's z-score against the `window` values before it."""

    metric: MetricName
    window: Annotated[int, msgspec.Meta(ge=2, le=10_000)] = 30
    threshold: Annotated[float, msgspec.Meta(gt=0)] = 3.0
    direction: Literal["increase", "decrease", "any"] = "any"


class ZScoreChecker:
    """Holds when the newest value is `threshold` population standard deviations
    from the mean of the `window` values before it."""

    __slots__ = ("description", "direction", "metric", "size", "threshold", "window")

    def __init__(self, config: MetricZScore) -> None:
        self.metric = config.metric
        self.window = config.window
        self.size = config.window + 1
        self.threshold = config.threshold
        self.direction = config.direction
        sign = {"increase": "≥ ", "decrease": "≤ -", "any": "beyond ±"}[config.direction]
        self.description = (f"z-score of {config.metric} {sign}{number(config.threshold)} "
                            f"vs the last {config.window} values")

    def holds(self, window: Sequence[float]) -> bool | None:
        """Whether the condition holds for the newest value (oldest first); None =
        cannot tell: too few values, or none of the spread a z-score needs."""
        if len(window) < self.size:
            return None
        values = window[-self.size:]
        earlier, x = values[:-1], values[-1]
        # fsum raises on inf + -inf and on overflow, which failed the whole event (a
        # ValueError for every value while both infinities were in the window);
        # aggregate answers NaN instead. An infinity among the earlier values leaves
        # no standard deviation to measure by: no verdict.
        mean = aggregate("avg", earlier)
        if not math.isfinite(mean):
            return None
        # `d * d` overflows to inf where `d ** 2` raises OverflowError.
        variance = math.fsum((v - mean) * (v - mean) for v in earlier) / self.window
        stdev = math.sqrt(variance)
        if stdev == 0 or math.isinf(stdev):
            return None  # skipped when the stdev is 0 (or too large for a float)
        z = (x - mean) / stdev
        if math.isnan(z):
            return None
        return direction_holds(self.direction, z, self.threshold)


def from_config(config: MetricZScore) -> ZScoreChecker:
    return ZScoreChecker(config)
