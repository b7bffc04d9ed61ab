"""A fixed-size ring of float64 values with a running sum: a run's latest values of one metric."""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterable

# A running sum drifts from the exact one by rounding: each of its steps errs by at
# most an ulp of a partial sum, and no partial sum exceeds `churn`, the magnitudes
# of every value added or removed since it was last summed exactly (the magnitudes
# of the values still in the ring are not enough: [1, 0.1] leaving [0, 0, 0] can
# leave 3e-17). Summed afresh every max(size, RESUM_STEPS) values, at most
# 2 x max(size, 1024) + 1 steps accumulate. A quick answer is trusted only farther
# than this from the threshold; nearer, the exact mean decides.
MARGIN = 1e-9
# Values replaced between two exact sums of a small ring (a big one: its size).
# Fewer exact sums cost less (a window of 5 was summed afresh every 5 values);
# the drift stays bounded: at most 2 x max(size, 1024) + 1 steps, under 3e-12.
RESUM_STEPS = 1024
_ZERO = array("d", [0.0])


# How far inside a threshold a value must lie to be calm on its own (`Ring.push`):
# relative, and absolute for thresholds at or near zero (a mean of tiny negative
# values can round to -0.0, which is >= 0).
VALUE_MARGIN = 1e-9
TINY = 1e-300

# What a ring's metric asks of it when every automation watching it is an average
# over the whole ring: (value_low, value_high, low, high, scale). A value in
# (value_low, value_high) is calm: no average of calm values can hold. Failing
# that, the ring's sum in (low, high), farther from both than its drift can
# reach (MARGIN x (churn + scale)), holds none either.
Calm = tuple[float, float, float, float, float]


def calm_bounds(above: list[float], below: list[float], size: int) -> Calm:
    """The Calm of averages over a ring of `size` that hold above each threshold
    of `above` and below each of `below` (their Comparison's side, +1 and -1:
    evaluate/calm.py sorts them). The value bounds lie strictly inside every
    threshold, so a tie (>= or <= at the threshold) is never calm. A mean of values all inside the value
    bounds stays inside every threshold, rounding included (math.fsum, then one
    division: a few ulps; the margin is a million times that). TINY keeps both
    tests off a threshold at zero: a sum of -5e-324 over 5 is a mean of -0.0."""
    value_high = min((t - (VALUE_MARGIN * abs(t) + TINY) for t in above), default=math.inf)
    value_low = max((t + (VALUE_MARGIN * abs(t) + TINY) for t in below), default=-math.inf)
    scale = max(abs(t) * size for t in above + below) + TINY / MARGIN
    return (value_low, value_high, max(below, default=-math.inf) * size,
            min(above, default=math.inf) * size, scale)


class Ring:
    """Keeps the last `size` values in one preallocated array (8 bytes a value),
    not a Python list of float objects (24+ bytes each, and growing), with their
    sum kept as values come and go (and `churn`, which bounds its drift), so an
    average over the whole ring costs one division, not a pass. While every value
    in the ring is calm (`push`) the sum is not kept: it is summed afresh when a
    value that is not calm comes."""

    __slots__ = ("buf", "churn", "count", "high", "low", "quiet", "resum_every", "size",
                 "start", "steps", "total")

    def __init__(self, size: int, values: Iterable[float] = ()) -> None:
        self.buf = _ZERO * size  # a third of array("d", bytes(8 * size))
        self.size = size
        self.start = 0  # index of the oldest value once full; of the next slot before
        self.count = 0
        self.total = 0.0
        self.churn = 0.0
        self.steps = 0  # values replaced since the sums were last exact
        # Not max(), a call (0.1 us): runs that log a few values each create many rings.
        self.resum_every = size if size > RESUM_STEPS else RESUM_STEPS  # noqa: FURB136
        # Calm values pushed in a row, up to `size`; at `size` every value in the
        # ring is calm, and `total` and `churn` are not kept (stale).
        self.quiet = 0
        # The calm values' bounds of the metric's automations, for RunBook.metrics's
        # inline push; (inf, -inf), no value calm, until the book says.
        self.low = math.inf
        self.high = -math.inf
        if values:
            for value in values:
                self.append(value)

    def append(self, value: float) -> None:
        self.push(value, None)

    def push(self, value: float, calm: Calm | None) -> bool:
        """Append `value`; True when `calm` is given and no average over the whole
        ring can hold: the ring is not full yet, every value in it is calm, or its
        sum lies in (low, high) farther from both than its drift can reach. The hot
        path of ingest: one call a value does the append and the whole check."""
        buf, size = self.buf, self.size
        if self.count < size:
            buf[self.count] = value
            self.count += 1
            self.total += value
            self.churn += abs(value)
            # Calm values are counted while the ring fills too: a ring filled with
            # them is calm at once, its sums not kept.
            if calm is not None and calm[0] < value < calm[1]:
                self.quiet += 1
            else:
                self.quiet = 0
            if self.count < size:
                return calm is not None
            if calm is None:
                self._resum()
                return False
            if self.quiet >= size:
                return True
            self._resum()
        else:
            at = self.start
            old = buf[at]
            buf[at] = value
            at += 1
            if at == size:
                at = 0
            self.start = at
            quiet = self.quiet
            stale = quiet >= size
            if calm is not None and calm[0] < value < calm[1]:
                if stale:
                    return True  # the cheapest case: every value calm, no sum kept
                quiet += 1
                self.quiet = quiet
                if quiet == size:
                    return True  # every value calm from now: the sum goes stale
            else:
                self.quiet = 0
            if stale:
                self._resum()  # a value that is not calm: the sums are needed again
            else:
                self.total += value - old
                self.churn += abs(value) + abs(old)
                self.steps += 1
                # Summed afresh every RESUM_STEPS values (and at least once a wrap for
                # big rings), so the drift never builds up; at once when an infinity
                # left, so the sums can be finite again.
                if self.steps >= self.resum_every or old - old != 0:
                    self._resum()
            if calm is None:
                return False
        _, _, low, high, scale = calm
        margin = MARGIN * (self.churn + scale)
        return low + margin < self.total < high - margin

    def rearm(self) -> None:
        """The calm bounds changed: the values in the ring count as calm no longer
        (they were judged by the old ones), and the sums are kept again."""
        if self.quiet >= self.size:
            self._resum()
        self.quiet = 0

    def _resum(self) -> None:
        self.steps = 0
        try:
            self.total = math.fsum(self.buf)
            self.churn = math.fsum(map(abs, self.buf))
        except (OverflowError, ValueError):  # infinities: no finite sum to keep
            self.total = self.churn = math.nan

    def settled_mean(self, threshold: float) -> float | None:
        """The mean of the whole (full) ring when it is clearly on one side of
        `threshold` (farther than the running sum's drift can reach), else None:
        the caller then decides on the exact values."""
        mean = self.total / self.size
        distance = mean - threshold
        # NaN (an infinity in the ring) fails both tests: None, the exact path.
        if abs(distance) > MARGIN * (self.churn / self.size + abs(threshold)):
            return mean
        return None

    def tail(self, n: int) -> list[float]:
        """The newest min(n, count) values, oldest first."""
        n = min(n, self.count)
        size = self.size
        first = (self.start + self.count - n) % size
        end = first + n
        if end <= size:
            return self.buf[first:end].tolist()
        return self.buf[first:].tolist() + self.buf[:end - size].tolist()

    def values(self) -> list[float]:
        return self.tail(self.count)

    def to_bytes(self) -> bytes:
        """The values oldest first, as doubles: sliced from the buffer as it is, with
        no float object made per value (a checkpoint writes every ring it changed)."""
        size, buf = self.size, self.buf
        first = self.start  # always below size
        end = first + self.count
        if end <= size:
            return buf[first:end].tobytes()
        return buf[first:].tobytes() + buf[:end - size].tobytes()

    @classmethod
    def from_bytes(cls, size: int, data: bytes) -> Ring:
        values = array("d")
        values.frombytes(data)
        return cls(size, values[-size:] if size else ())
