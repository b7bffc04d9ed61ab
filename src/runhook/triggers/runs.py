"""The run trigger kinds joined in one union, as the configuration decodes them."""

from __future__ import annotations

from runhook.triggers.change import MetricChange
from runhook.triggers.state import RunStateTrigger
from runhook.triggers.threshold import MetricThreshold
from runhook.triggers.zscore import MetricZScore

RunTriggers = MetricThreshold | MetricChange | MetricZScore | RunStateTrigger


def from_config(config: RunTriggers) -> object | None:
    """A checker for one run automation (filled in by the run-trigger modules)."""
    return None
