"""The fixed-size ring."""

from __future__ import annotations

from hypothesis import given
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
