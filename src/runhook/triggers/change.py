"""RUN_METRIC_CHANGE: the current window's aggregate against the prior window's."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from runhook.triggers.run_filter import MetricName, RunFilter, Window


class MetricChange(RunFilter, tag="RUN_METRIC_CHANGE", kw_only=True):
    """agg(last `window`) against agg(the `prior_window` values just before them)."""

    metric: MetricName
    agg: Literal["avg", "average", "mean", "min", "max"] = "avg"
    window: Window = 1
    prior_window: Window | None = None
    change: Literal["absolute", "relative"] = "absolute"
    direction: Literal["increase", "decrease", "any"] = "any"
    amount: Annotated[float, msgspec.Meta(gt=0)]
