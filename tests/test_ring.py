"""The fixed-size ring."""

from __future__ import annotations

import math
from array import array

from hypothesis import example, given
from hypothesis import strategies as st

from runhook.evaluate.ring import Ring, calm_bounds


@given(st.integers(min_value=1, max_value=40),
       st.lists(st.floats(allow_nan=False), max_size=200), st.integers(0, 50))
def test_ring_keeps_the_last_values(size, values, n):
    ring = Ring(size)
    for v in values:
        ring.append(v)
    assert ring.values() == values[-size:]
    assert ring.tail(n) == (values[-size:][-n:] if n else [])
    assert Ring.from_bytes(size, ring.to_bytes()).values() == values[-size:]
    assert Ring.from_bytes(3, ring.to_bytes()).values() == values[-size:][-3:]


FINITE = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e12, max_value=1e12)


@given(st.integers(min_value=1, max_value=12),
       st.lists(st.one_of(FINITE, st.sampled_from([0.1, 0.2, 0.3, 1e16, -1e16, 1.0])),
                min_size=1, max_size=300),
       st.one_of(FINITE, st.sampled_from([0.2, 0.1 + 0.2, 1.0, 0.0])))
@example(size=3, values=[1.0, 0.1, 0.0, 0.0, 0.0], threshold=0.0)  # drift of values gone
def test_a_settled_mean_agrees_with_the_exact_one(size, values, threshold):
    """Whenever the running sum answers, its side of the threshold is the exact
    mean's side (math.fsum of the window): it may only decline to answer."""
    ring = Ring(size)
    for v in values:
        ring.append(v)
        if ring.count < size:
            continue
        mean = ring.settled_mean(threshold)
        if mean is not None:
            exact = math.fsum(ring.values()) / size
            assert (mean > threshold) == (exact > threshold)
            assert (mean < threshold) == (exact < threshold)


def test_a_settled_mean_answers_far_from_the_threshold_and_declines_at_it():
    ring = Ring(3)
    for v in (1.0, 2.0, 3.0):
        ring.append(v)
    assert ring.settled_mean(10.0) == 2.0
    assert ring.settled_mean(2.0) is None  # on the threshold: the exact path decides
    ring.append(math.inf)  # an infinity in the ring: no running sum to trust
    assert ring.settled_mean(10.0) is None
    for v in (4.0, 5.0, 6.0):  # the infinity has left: summed afresh at the wrap
        ring.append(v)
    assert ring.settled_mean(10.0) == 5.0


# Values around zero and the thresholds: tenths (whose sums round), tiny magnitudes
# whose mean underflows to -0.0, huge ones, infinities.
NEAR = st.one_of(st.integers(-30, 30).map(lambda n: n / 10),
                 st.sampled_from([0.0, -0.0, 5e-324, -5e-324, 1e-300, -1e-300, 1e16, -1e16,
                                  1e308, -1e308, math.inf, -math.inf]))


@given(st.integers(min_value=1, max_value=7),
       st.lists(st.tuples(NEAR, st.booleans()), max_size=150),
       st.lists(st.tuples(st.sampled_from([0.0, 0.1, 0.3, -0.7, 1.5, 1e16]), st.booleans()),
                min_size=1, max_size=3))
@example(size=5, pushes=[(-5e-324, False)] + [(0.0, False)] * 4, thresholds=[(0.0, True)])
def test_push_says_calm_only_when_no_average_over_the_ring_can_hold(size, pushes, thresholds):
    """`push` answers True (calm) only when the exact mean of the full ring is on
    the calm side of every threshold, ties included; and after any push the
    running sum, when it answers, agrees with the exact mean (it is resummed
    when a value that is not calm comes after a calm stretch)."""
    above = [t for t, up in thresholds if up]
    below = [t for t, up in thresholds if not up]
    calm = calm_bounds(above, below, size)
    ring = Ring(size)
    for value, active in pushes:  # active: a condition holds, the caller asks no calm
        quiet = ring.push(value, None if active else calm)
        assert quiet is False if active else isinstance(quiet, bool)
        # The checkpoint's bytes, sliced from the buffer, are the plain definition's.
        assert ring.to_bytes() == array("d", ring.values()).tobytes()
        try:
            mean = math.fsum(ring.values()) / size
        except (OverflowError, ValueError):
            continue  # no mean: no condition holds or clears
        if quiet and ring.count == size:
            assert not any(mean >= t for t in above)
            assert not any(mean <= t for t in below)
        if not quiet and ring.count == size:
            for t, _ in thresholds:
                settled = ring.settled_mean(t)
                if settled is not None:
                    assert (settled > t) == (mean > t) and (settled < t) == (mean < t)


def test_a_ring_filled_with_calm_values_is_calm_at_once_and_sums_afresh_when_one_is_not():
    calm = calm_bounds([10.0], [], 3)  # an average above 10
    ring = Ring(3)
    assert [ring.push(v, calm) for v in (1.0, 2.0, 3.0)] == [True, True, True]
    assert ring.quiet == 3  # calm at once: no sums kept from here
    assert ring.push(40.0, calm) is False  # 2 + 3 + 40 = 45 > 30: not calm
    assert ring.settled_mean(10.0) == 15.0  # summed afresh, exact
