"""Property tests: triggers fire exactly at the false→true transitions of a reference
evaluation written here, independently of the code under test."""

from __future__ import annotations

import operator

from hypothesis import given, settings
from hypothesis import strategies as st
from run_helpers import book, feed

OPS = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le,
       "==": operator.eq, "!=": operator.ne}


def reference_threshold(series: list[int], window: int, agg: str, cmp: str,
                        threshold: float) -> list[int]:
    fired, was_true = [], False
    for i in range(len(series)):
        if i + 1 < window:
            continue  # not enough values yet: no verdict, nothing changes
        last = series[i + 1 - window:i + 1]
        value = {"avg": sum(last) / window, "min": min(last), "max": max(last)}[agg]
        now_true = OPS[cmp](value, threshold)
        if now_true and not was_true:
            fired.append(i)
        was_true = now_true
    return fired


# Integer values keep every sum exact, so the boundary cases (==, >=) are decided
# the same way by both sides and the comparison tests the trigger logic only.
@settings(max_examples=300, deadline=None)
@given(series=st.lists(st.integers(-20, 20), max_size=60),
       window=st.integers(1, 6),
       agg=st.sampled_from(["avg", "min", "max"]),
       cmp=st.sampled_from(list(OPS)),
       threshold=st.integers(-10, 10).map(lambda t: t / 2))
def test_threshold_fires_exactly_on_crossings(series, window, agg, cmp, threshold):
    table = (f'{{ kind = "RUN_METRIC_THRESHOLD", metric = "loss", agg = "{agg}", '
             f'window = {window}, cmp = "{cmp}", threshold = {threshold} }}')
    fired, skipped = feed(book(table), [float(v) for v in series])
    assert skipped == []
    assert fired == reference_threshold(series, window, agg, cmp, threshold)


@settings(max_examples=200, deadline=None)
@given(series=st.lists(st.integers(-20, 20), max_size=60),
       cooldown=st.integers(0, 10))
def test_cooldown_splits_crossings_into_fired_and_skipped(series, cooldown):
    """Every crossing is either fired or skipped; a skip happens exactly when the
    last real firing is less than `cooldown` steps back."""
    table = '{ kind = "RUN_METRIC_THRESHOLD", metric = "loss", cmp = ">", threshold = 0 }'
    fired, skipped = feed(book(table, cooldown=f"{cooldown}s"), [float(v) for v in series])
    crossings = reference_threshold(series, 1, "max", ">", 0)
    expected_fired, expected_skipped, last = [], [], None
    for i in crossings:
        if last is not None and i - last < cooldown:
            expected_skipped.append(i)
        else:
            expected_fired.append(i)
            last = i
    assert (fired, skipped) == (expected_fired, expected_skipped)
