"""What a metric means to a run: its ring's size, the automations watching it, and
the bounds inside which none of them can hold (the hot path's calm test); pure."""

from __future__ import annotations

import math
from collections.abc import Callable

from runhook.config.settings import Automation
from runhook.evaluate.ring import Calm, calm_bounds
from runhook.triggers.runs import MetricChecker
from runhook.triggers.threshold import ThresholdChecker

# For an average over the whole ring against a threshold: (threshold, holds, side)
# of its Comparison, for the running-sum test (RunBook.metrics) and the calm bounds.
Quick = tuple[float, Callable[[float, float], bool], int]
# An automation watching a metric, with its checker and its Quick, if it has one.
Watch = tuple[Automation, MetricChecker, Quick | None]
# What a metric means to one run: its ring's size, the automations watching it,
# and when every one is an average over the whole ring, the values and the sums
# of the ring between which none of them holds (see `_calm`); then the calm
# values' bounds again, (inf, -inf) when there are none (no value is calm).
Dispatch = tuple[int, list[Watch], Calm | None, float, float]
# Every value and every sum is calm: nothing to check.
ALWAYS_CALM: Calm = (-math.inf, math.inf, -math.inf, math.inf, 0.0)


def dispatch(size: int, watching: list[tuple[Automation, MetricChecker]]) -> Dispatch:
    """The Dispatch of a metric whose ring holds `size` values, watched by these."""
    watches = [(a, checker, _quick(checker, size)) for a, checker in watching]
    calm = _calm(watches, size)
    if calm is None:
        return (size, watches, None, math.inf, -math.inf)
    return (size, watches, calm, calm[0], calm[1])


def kept_only(size: int) -> Dispatch:
    """A ring kept for GROUP_FINISHED's best run only: no condition reads it."""
    return (size, [], ALWAYS_CALM, -math.inf, math.inf)


def _calm(watches: list[Watch], size: int) -> Calm | None:
    """(value_low, value_high, low, high, scale) when every watch is an average over
    the whole ring: while every value in the ring lies in (value_low, value_high),
    or the ring's sum lies in (low, high) farther from both than its drift can
    reach (MARGIN x (the ring's churn + scale)), no condition holds."""
    if any(quick is None for _, _, quick in watches):
        return None
    # A comparison that holds only above its threshold is calm below it, and the
    # reverse (Comparison.side): the bounds come from the one definition.
    above = [t for _, _, (t, _, side) in watches if side > 0]  # type: ignore[misc]
    below = [t for _, _, (t, _, side) in watches if side < 0]  # type: ignore[misc]
    return calm_bounds(above, below, size)


def _quick(checker: MetricChecker, ring_size: int) -> Quick | None:
    """The Quick of a checker that is an average over the whole ring with a
    comparison that has a side: the ring's running sum then decides most values."""
    if not isinstance(checker, ThresholdChecker) or checker.agg != "avg" \
            or checker.size != ring_size or not checker.comparison.side:
        return None
    return checker.threshold, checker.compare, checker.comparison.side
