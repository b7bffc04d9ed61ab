"""Aggregates and comparisons the metric triggers share (pure)."""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Sequence
from typing import NamedTuple

AGGREGATES: dict[str, Callable[[Sequence[float]], float]] = {
    "avg": lambda xs: math.fsum(xs) / len(xs),
    "min": min,
    "max": max,
}
AGGREGATES["average"] = AGGREGATES["mean"] = AGGREGATES["avg"]



class Comparison(NamedTuple):
    """What `value <symbol> threshold` means: the one definition of a threshold, which
    the trigger decides by and the fast paths derive their bounds from. `holds` is
    the comparison itself (NaN compares false, so a NaN aggregate never holds: the
    trigger skips it as "cannot tell"). `side` is where it can hold: +1 only at or
    above the threshold, -1 only at or below it; 0 on either side (== and !=), so
    no value is calm for it on its own. A condition fires when it starts to hold
    (triggers/crossing.py)."""

    symbol: str
    holds: Callable[[float, float], bool]
    side: int


COMPARISONS: dict[str, Comparison] = {c.symbol: c for c in (
    Comparison(">", operator.gt, 1), Comparison(">=", operator.ge, 1),
    Comparison("<", operator.lt, -1), Comparison("<=", operator.le, -1),
    Comparison("==", operator.eq, 0), Comparison("!=", operator.ne, 0),
)}


def canonical(agg: str) -> str:
    return "avg" if agg in ("average", "mean") else agg


def aggregate(agg: str, values: Sequence[float]) -> float:
    """The aggregate; NaN when infinities cancel (inf + -inf), which callers skip."""
    try:
        return AGGREGATES[agg](values)
    except (OverflowError, ValueError):
        return math.nan


def direction_holds(direction: str, delta: float, amount: float) -> bool:
    if direction == "increase":
        return delta >= amount
    if direction == "decrease":
        return delta <= -amount
    return abs(delta) >= amount


def number(value: float) -> str:
    """A threshold as people write it: 10 not 10.0, 0.001 not 1e-03."""
    return f"{value:g}" if abs(value) >= 1e-4 or value == 0 else repr(value)
