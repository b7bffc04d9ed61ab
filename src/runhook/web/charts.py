"""Server-rendered SVG pictures for the console (no JavaScript): a line of values
against a threshold, and counts over time as bars. Numbers only go in: nothing to
escape but the labels, which `escape` takes."""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

WIDTH, HEIGHT, PAD = 560, 150, 30


def _fmt(value: float) -> str:
    return f"{value:.4g}"


def line(values: Sequence[float], threshold: float | None = None, label: str = "") -> str:
    """`values` oldest first as a line with a dot per value, the threshold as a
    dashed red line; ±Infinity is drawn at the edge and said in the title."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite and threshold is None:
        return ""
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

    points = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(values))
    dots = "".join(f'<circle cx="{x(i):.1f}" cy="{y(v):.1f}" r="3" fill="#1f4fb0">'
                   f"<title>{escape(_fmt(v))}</title></circle>" for i, v in enumerate(values))
    rule = ""
    if threshold is not None:
        ty = y(threshold)
        rule = (f'<line x1="{PAD}" x2="{WIDTH - PAD}" y1="{ty:.1f}" y2="{ty:.1f}" '
                f'stroke="#a3201a" stroke-dasharray="5 4"/>'
                f'<text x="{WIDTH - PAD}" y="{ty - 4:.1f}" text-anchor="end" fill="#a3201a">'
                f"threshold {escape(_fmt(threshold))}</text>")
    return (f'<svg class="chart" role="img" viewBox="0 0 {WIDTH} {HEIGHT}" '
            f'width="{WIDTH}" height="{HEIGHT}" font-size="11">'
            f"<title>{escape(label)}</title>"
            f'<rect width="{WIDTH}" height="{HEIGHT}" fill="#fff"/>'
            f'<text x="4" y="{PAD + 4}" fill="#667">{escape(_fmt(high - margin))}</text>'
            f'<text x="4" y="{HEIGHT - PAD}" fill="#667">{escape(_fmt(low + margin))}</text>'
            f"{rule}"
            f'<polyline points="{points}" fill="none" stroke="#1f4fb0" stroke-width="1.5"/>'
            f"{dots}</svg>")


def bars(counts: Sequence[tuple[str, int]], label: str = "") -> str:
    """One bar per (label, count), left to right; the tallest fills the height."""
    if not counts:
        return ""
    most = max(c for _, c in counts) or 1
    inner_w, inner_h = WIDTH - 2 * PAD, HEIGHT - 2 * PAD
    step = inner_w / len(counts)
    out = []
    for i, (name, count) in enumerate(counts):
        h = inner_h * count / most
        out.append(f'<rect x="{PAD + i * step + 1:.1f}" y="{PAD + inner_h - h:.1f}" '
                   f'width="{max(step - 2, 1):.1f}" height="{h:.1f}" fill="#1f4fb0">'
                   f"<title>{escape(name)}: {count}</title></rect>")
    first, last = counts[0][0], counts[-1][0]
    return (f'<svg class="chart" role="img" viewBox="0 0 {WIDTH} {HEIGHT}" '
            f'width="{WIDTH}" height="{HEIGHT}" font-size="11">'
            f"<title>{escape(label)}</title>"
            f'<rect width="{WIDTH}" height="{HEIGHT}" fill="#fff"/>'
            f'<text x="4" y="{PAD + 4}" fill="#667">{most}</text>'
            f'<line x1="{PAD}" x2="{WIDTH - PAD}" y1="{PAD + inner_h}" y2="{PAD + inner_h}" '
            f'stroke="#ccd"/>{"".join(out)}'
            f'<text x="{PAD}" y="{HEIGHT - 8}" fill="#667">{escape(first)}</text>'
            f'<text x="{WIDTH - PAD}" y="{HEIGHT - 8}" text-anchor="end" fill="#667">'
            f"{escape(last)}</text></svg>")
