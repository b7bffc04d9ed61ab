"""RUN_METRIC_THRESHOLD: the aggregate of a metric's last N values against a threshold."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from runhook.triggers.run_filter import MetricName, RunFilter, Window


class MetricThreshold(RunFilter, tag="RUN_METRIC_THRESHOLD", kw_only=True):
    """The aggregate of the last `window` values compared with `threshold`."""

    metric: MetricName
    agg: Literal["avg", "average", "mean", "min", "max"] | None = None
    window: Window = 1
    cmp: Literal[">", ">=", "<", "<=", "==", "!="]
    threshold: float
