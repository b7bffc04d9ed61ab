"""The fixed-size ring."""

from __future__ import annotations

import math

from hypothesis import example, given
from hypothesis import strategies as st

from runhook.evaluate.ring import Ring


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
