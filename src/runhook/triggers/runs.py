"""The run trigger kinds joined in one union, and the checker each builds."""

from __future__ import annotations

from runhook.triggers import change, group_finished, nonfinite, stalled, state, threshold, zscore
from runhook.triggers.change import MetricChange
from runhook.triggers.group_finished import GroupFinished
from runhook.triggers.nonfinite import MetricNonFinite
from runhook.triggers.run_filter import RunMatcher
from runhook.triggers.stalled import RunStalled
from runhook.triggers.state import RunStateTrigger
from runhook.triggers.threshold import MetricThreshold
from runhook.triggers.zscore import MetricZScore

RunTriggers = (MetricThreshold | MetricChange | MetricZScore | RunStateTrigger | RunStalled
               | MetricNonFinite | GroupFinished)
MetricChecker = threshold.ThresholdChecker | change.ChangeChecker | zscore.ZScoreChecker


class RunChecker:
    """A run automation's filter and condition, built once from its `event` table:
    exactly one of the condition slots is set."""

    __slots__ = ("group", "matcher", "metric", "nonfinite", "stall", "state")

    def __init__(self, config: RunTriggers) -> None:
        self.matcher = RunMatcher(config)
        self.metric: MetricChecker | None = None
        self.state: state.StateChecker | None = None
        self.stall: stalled.StallChecker | None = None
        self.nonfinite: nonfinite.NonFiniteChecker | None = None
        self.group: group_finished.GroupChecker | None = None
        match config:
            case MetricThreshold():
                self.metric = threshold.from_config(config)
            case MetricChange():
                self.metric = change.from_config(config)
            case MetricZScore():
                self.metric = zscore.from_config(config)
            case RunStateTrigger():
                self.state = state.from_config(config)
            case RunStalled():
                self.stall = stalled.from_config(config)
            case MetricNonFinite():
                self.nonfinite = nonfinite.from_config(config)
            case GroupFinished():
                self.group = group_finished.from_config(config)


def from_config(config: RunTriggers) -> RunChecker:
    return RunChecker(config)
