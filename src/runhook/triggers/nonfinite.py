"""RUN_METRIC_NONFINITE: a logged value is NaN or ±Infinity."""

from __future__ import annotations

from runhook.triggers.run_filter import MetricName, RunFilter


class MetricNonFinite(RunFilter, tag="RUN_METRIC_NONFINITE", kw_only=True, frozen=True):
    """Fires when a value of `metric` is NaN or ±Infinity (a NaN literal counts, `null`
    does not: it says "no value"); armed again after a finite value."""

    metric: MetricName


class NonFiniteChecker:
    __slots__ = ("description", "metric")

    def __init__(self, config: MetricNonFinite) -> None:
        self.metric = config.metric
        self.description = f"{config.metric} is NaN or infinite"

    def holds(self, value: float | None) -> bool | None:
        """True for NaN and ±Infinity, False for a finite value, None for null."""
        if value is None:
            return None
        return value != value or value in (float("inf"), float("-inf"))  # noqa: PLR0124 - NaN


def from_config(config: MetricNonFinite) -> NonFiniteChecker:
    return NonFiniteChecker(config)
