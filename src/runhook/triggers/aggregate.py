"""Aggregates and comparisons the metric triggers share (pure)."""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Sequence

AGGREGATES: dict[str, Callable[[Sequence[float]], float]] = {
    "avg": lambda xs: math.fsum(xs) / len(xs),
    "min": min,
    "max": max,
}
AGGREGATES["average"] = AGGREGATES["mean"] = AGGREGATES["avg"]

COMPARISONS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le,
    "==": operator.eq, "!=": operator.ne,
}


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
