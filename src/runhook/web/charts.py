"""Server-rendered SVG pictures for the console (no JavaScript): a line of values
against a threshold, and counts over time as bars. Here only the geometry, numbers
formatted as text; templates/charts.html draws them, escaping the labels as it prints."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

WIDTH, HEIGHT, PAD = 560, 150, 30


def _fmt(value: float) -> str:
    return f"{value:.4g}"


@dataclass(frozen=True, slots=True)
class Dot:
    x: str
    y: str
    value: str


@dataclass(frozen=True, slots=True)
class Line:
    label: str
    top: str  # the highest value drawn, said at the top left
    bottom: str
    points: str  # the polyline's "x,y x,y ..."
    dots: list[Dot]
    threshold_y: str | None  # where the dashed threshold line runs, if there is one
    threshold_label_y: str
    threshold: str


@dataclass(frozen=True, slots=True)
class Bar:
    x: str
    y: str
    width: str
    height: str
    name: str
    count: int


@dataclass(frozen=True, slots=True)
class Bars:
    label: str
    most: int
    bars: list[Bar]
    first: str
    last: str


def line(values: Sequence[float], threshold: float | None = None,
         label: str = "") -> Line | None:
    """`values` oldest first as a line with a dot per value, the threshold as a
    dashed red line; ±Infinity is drawn at the edge and said in the title."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite and threshold is None:
        return None
    span = finite + ([threshold] if threshold is not None else [])
    low, high = min(span), max(span)
    if high == low:
        low, high = low - 1, high + 1
    margin = (high - low) * 0.08
    low, high = low - margin, high + margin
    inner_w, inner_h = WIDTH - 2 * PAD, HEIGHT - 2 * PAD

    def x(i: int) -> float:
        return PAD + (inner_w * i / (len(values) - 1) if len(values) > 1 else inner_w / 2)

    def y(v: float) -> float:
        v = high if v == math.inf else low if v == -math.inf else v
        return PAD + inner_h * (high - v) / (high - low)

    return Line(label=label, top=_fmt(high - margin), bottom=_fmt(low + margin),
                points=" ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(values)),
                dots=[Dot(f"{x(i):.1f}", f"{y(v):.1f}", _fmt(v)) for i, v in enumerate(values)],
                threshold_y=None if threshold is None else f"{y(threshold):.1f}",
                threshold_label_y="" if threshold is None else f"{y(threshold) - 4:.1f}",
                threshold="" if threshold is None else _fmt(threshold))


def bars(counts: Sequence[tuple[str, int]], label: str = "") -> Bars | None:
    """One bar per (label, count), left to right; the tallest fills the height."""
    if not counts:
        return None
    most = max(c for _, c in counts) or 1
    inner_w, inner_h = WIDTH - 2 * PAD, HEIGHT - 2 * PAD
    step = inner_w / len(counts)
    drawn = []
    for i, (name, count) in enumerate(counts):
        h = inner_h * count / most
        drawn.append(Bar(f"{PAD + i * step + 1:.1f}", f"{PAD + inner_h - h:.1f}",
                         f"{max(step - 2, 1):.1f}", f"{h:.1f}", name, count))
    return Bars(label, most, drawn, counts[0][0], counts[-1][0])
