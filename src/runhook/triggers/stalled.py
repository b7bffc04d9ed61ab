"""RUN_STALLED: a running run that logged no value of a metric (or of any) for a while."""

from __future__ import annotations

import msgspec

from runhook.core.durations import describe
from runhook.triggers.run_filter import MetricName, RunFilter, span


class RunStalled(RunFilter, tag="RUN_STALLED", kw_only=True, frozen=True):
    """Fires once when a running run logged no value of `metric` (of any metric when
    omitted) for `for`; armed again when values resume. Heartbeats do not count: the
    process is alive, the training is stuck."""

    metric: MetricName | None = None
    span: str = msgspec.field(name="for")  # `for` is a Python keyword


class StallChecker:
    __slots__ = ("description", "metric", "span")

    def __init__(self, config: RunStalled) -> None:
        self.metric = config.metric
        self.span = span("for", config.span)
        what = f"no value of {config.metric}" if config.metric else "no metric logged"
        self.description = f"{what} for {describe(self.span)}"

    def logged(self, values: dict[str, float | None]) -> bool:
        """Whether an event's values count as the run making progress (NaN counts: the
        training moved, badly; null is no value)."""
        if self.metric is None:
            return any(v is not None for v in values.values())
        return values.get(self.metric) is not None


def from_config(config: RunStalled) -> StallChecker:
    return StallChecker(config)
