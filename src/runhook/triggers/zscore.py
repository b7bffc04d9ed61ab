"""RUN_METRIC_ZSCORE: a new value's distance from the recent mean, in standard deviations."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from runhook.triggers.run_filter import MetricName, RunFilter, Window


class MetricZScore(RunFilter, tag="RUN_METRIC_ZSCORE", kw_only=True):
    """A new value's z-score against the `window` values before it."""

    metric: MetricName
    window: Annotated[int, msgspec.Meta(ge=2, le=10_000)] = 30
    threshold: Annotated[float, msgspec.Meta(gt=0)] = 3.0
    direction: Literal["increase", "decrease", "any"] = "any"
