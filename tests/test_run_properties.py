"""Property tests: triggers fire exactly at the false→true transitions of a reference
evaluation written here, independently of the code under test."""

from __future__ import annotations

import math
import operator
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from run_helpers import book, feed, metrics

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


# --- change and z-score, with NaN, null and ±Infinity ----------------------------
#
# docs/guarantees.md: NaN and null are ignored (they are not values of the series), ±Infinity
# takes part. Where the definition's arithmetic is undefined (∞ − ∞, ∞ / ∞), as where
# it says "skipped" (a relative change from 0, a stdev of 0), there is no verdict:
# the crossing state stays as it was.

NAN, INF = math.nan, math.inf
# Mostly small integers (their sums are exact, so a tie at the boundary is decided the
# same way here as there), with NaN, null and infinities mixed in.
VALUES = st.one_of(st.integers(-20, 20).map(float), st.integers(-20, 20).map(float),
                   st.sampled_from([NAN, None, INF, -INF]))


def series_of(values: list[float | None]) -> tuple[list[int], list[float]]:
    """(index of each kept value in `values`, the kept values): what a run's series holds."""
    kept = [(i, v) for i, v in enumerate(values) if v is not None and not math.isnan(v)]
    return [i for i, _ in kept], [v for _, v in kept]


def crossings(values: list[float | None], size: int,
              verdict: Callable[[list[float]], bool | None]) -> list[int]:
    """Indices (in `values`) of the evaluations that became true; `verdict` answers
    for the last `size` values of the series, None for no verdict."""
    where, series = series_of(values)
    fired, was_true = [], False
    for k in range(size - 1, len(series)):
        now_true = verdict(series[k + 1 - size:k + 1])
        if now_true is None:
            continue
        if now_true and not was_true:
            fired.append(where[k])
        was_true = now_true
    return fired


def holds(direction: str, delta: float, amount: float) -> bool:
    return {"increase": delta >= amount, "decrease": delta <= -amount,
            "any": abs(delta) >= amount}[direction]


def reference_change(values: list[float | None], agg: str, window: int, prior: int,
                     change: str, direction: str, amount: float) -> list[int]:
    def aggregate(xs: list[float]) -> float:
        return {"avg": sum(xs) / len(xs) if xs else NAN, "min": min(xs), "max": max(xs)}[agg]

    def verdict(last: list[float]) -> bool | None:
        before, current = aggregate(last[:prior]), aggregate(last[prior:])
        if change == "relative":
            if before == 0:
                return None  # "skipped when prior is 0"
            delta = (current - before) / abs(before)
        else:
            delta = current - before
        return None if math.isnan(delta) else holds(direction, delta, amount)
    return crossings(values, window + prior, verdict)


@settings(max_examples=400, deadline=None)
@given(values=st.lists(VALUES, max_size=40),
       agg=st.sampled_from(["avg", "min", "max"]),
       window=st.integers(1, 4),
       prior=st.one_of(st.none(), st.integers(1, 4)),
       change=st.sampled_from(["absolute", "relative"]),
       direction=st.sampled_from(["increase", "decrease", "any"]),
       amount=st.sampled_from([0.5, 1.0, 2.0, 3.5, 8.0]))
def test_change_fires_exactly_on_crossings(values, agg, window, prior, change, direction,
                                           amount):
    prior_table = "" if prior is None else f", prior_window = {prior}"
    table = (f'{{ kind = "RUN_METRIC_CHANGE", metric = "loss", agg = "{agg}", window = {window}'
             f'{prior_table}, change = "{change}", direction = "{direction}", amount = {amount} }}')
    fired, skipped = feed(book(table), values)
    assert skipped == []
    assert fired == reference_change(values, agg, window, prior or window, change, direction,
                                     amount)


def reference_zscore(values: list[float | None], window: int, threshold: float,
                     direction: str) -> list[int]:
    def verdict(last: list[float]) -> bool | None:
        earlier, x = last[:-1], last[-1]
        mean = sum(earlier) / window
        stdev = math.sqrt(sum((v - mean) ** 2 for v in earlier) / window)
        if math.isnan(stdev) or stdev == 0:
            return None  # undefined (an infinity among the earlier values), or "skipped when 0"
        z = (x - mean) / stdev
        return None if math.isnan(z) else holds(direction, z, threshold)
    return crossings(values, window + 1, verdict)


# Thresholds no z of small integers comes within rounding of (z² is rational, these
# squares are not near any small fraction), so float noise cannot decide a verdict;
# ties at the threshold are checked by the example below.
THRESHOLDS = [math.e / 4, math.pi / 4, math.e / 2, math.pi / 2, math.e, math.pi]


@settings(max_examples=400, deadline=None)
@given(values=st.lists(VALUES, max_size=40),
       window=st.integers(2, 6),
       threshold=st.sampled_from(THRESHOLDS),
       direction=st.sampled_from(["increase", "decrease", "any"]))
def test_zscore_fires_exactly_on_crossings(values, window, threshold, direction):
    table = (f'{{ kind = "RUN_METRIC_ZSCORE", metric = "loss", window = {window}, '
             f'threshold = {threshold!r}, direction = "{direction}" }}')
    fired, skipped = feed(book(table), values)
    assert skipped == []
    assert fired == reference_zscore(values, window, threshold, direction)


@pytest.mark.parametrize("direction, x, fires", [
    ("increase", 3.0, True),    # z = (3 - 1) / 1 = 2: "z ≥ t" holds at the threshold
    ("increase", INF, True),    # an infinite jump is an infinite z
    ("decrease", -1.0, True),   # z = -2 ≤ -t
    ("decrease", -INF, True),
    ("any", -1.0, True),
    ("increase", -1.0, False),
    ("decrease", 3.0, False),
])
def test_zscore_at_the_threshold_and_at_infinity(direction, x, fires):
    table = (f'{{ kind = "RUN_METRIC_ZSCORE", metric = "loss", window = 2, threshold = 2, '
             f'direction = "{direction}" }}')
    assert feed(book(table), [0.0, NAN, 2.0, None, x]) == ([4] if fires else [], [])


@pytest.mark.parametrize("series, fires", [
    # Both infinities among the earlier values: the mean is undefined. This raised
    # ValueError (fsum of inf and -inf), failing each event while they were in the window.
    ([INF, -INF, 0.0, 100.0, 0.0, 100.0], [5]),
    ([INF, 0.0, 100.0, 0.0, 100.0], [4]),  # one: the stdev is undefined
    # Deviations too large for a float: (1e200) ** 2 raised OverflowError.
    ([1e200, -1e200, 0.0, 100.0, 0.0, 100.0], [5]),
    ([1e308, 1e308, 0.0, 100.0, 0.0, 100.0], [5]),  # fsum overflowed in the mean
])
def test_infinities_and_huge_values_among_the_earlier_values_give_no_verdict(series, fires):
    """No verdict while they are in the window; the run goes on (window 2: the value at
    index i is measured against i-2 and i-1)."""
    table = ('{ kind = "RUN_METRIC_ZSCORE", metric = "loss", window = 2, threshold = 1, '
             'direction = "increase" }')
    assert feed(book(table), series) == (fires, [])


@pytest.mark.parametrize("series, fires", [
    ([1.0, INF], [1]),        # inf - 1 = inf ≥ 1
    ([INF, INF], []),         # inf - inf: undefined, no verdict
    ([INF, 1.0, 5.0], [2]),   # the undefined step changed nothing; 5 - 1 fires
    ([-INF, INF], [1]),
    ([0.0, 5.0, NAN, 5.0], [1]),  # NaN is not a value: no 5 - NaN, no re-arm
])
def test_absolute_change_with_infinities(series, fires):
    table = '{ kind = "RUN_METRIC_CHANGE", metric = "loss", amount = 1, direction = "increase" }'
    assert feed(book(table), series) == (fires, [])


# Long series of awkward floats (tenths, whose sums round, huge and tiny magnitudes,
# infinities) through a window-N average: the running sum the hot path keeps must
# never decide differently from the exact mean of the window (math.fsum).
AWKWARD = st.one_of(st.integers(-30, 30).map(lambda n: n / 10),
                    st.sampled_from([1e16, -1e16, 1e-300, -1e-300, 5e-324, -5e-324, 0.1, 0.2,
                                      0.3, INF, -INF, NAN, None]))


@settings(max_examples=300, deadline=None)
@given(values=st.lists(AWKWARD, max_size=120),
       window=st.integers(1, 7),
       cmp=st.sampled_from([">", ">=", "<", "<="]),
       threshold=st.sampled_from([0.0, 0.1, 0.2, 0.3, 1.5, -0.7, 1e16]))
def test_an_average_over_the_whole_ring_fires_as_the_exact_mean_says(values, window, cmp,
                                                                     threshold):
    def verdict(last: list[float]) -> bool | None:
        try:
            mean = math.fsum(last) / window
        except (OverflowError, ValueError):  # inf - inf: no mean, no verdict
            return None
        return None if math.isnan(mean) else OPS[cmp](mean, threshold)

    table = (f'{{ kind = "RUN_METRIC_THRESHOLD", metric = "loss", agg = "avg", '
             f'window = {window}, cmp = "{cmp}", threshold = {threshold!r} }}')
    fired, _ = feed(book(table), values)
    assert fired == crossings(values, window, verdict)


@pytest.mark.parametrize(("cmp", "series", "fires"), [
    # -5e-324 / 5 rounds to -0.0, and -0.0 >= 0: the exact mean holds, though the
    # sum is below zero (the running-sum test once called that calm).
    (">=", [-5e-324, 0.0, 0.0, 0.0, 0.0], [4]),
    (">", [-5e-324, 0.0, 0.0, 0.0, 0.0], []),
    ("<=", [5e-324, 0.0, 0.0, 0.0, 0.0], [4]),
    ("<=", [5e-324, 5e-324, 5e-324, 5e-324, 5e-324], []),
])
def test_an_average_that_rounds_to_zero_decides_as_the_exact_mean(cmp, series, fires):
    table = (f'{{ kind = "RUN_METRIC_THRESHOLD", metric = "loss", agg = "avg", '
             f'window = 5, cmp = "{cmp}", threshold = 0.0 }}')
    assert feed(book(table), series) == (fires, [])


@settings(max_examples=200, deadline=None)
@given(values=st.lists(AWKWARD, max_size=120),
       window=st.integers(1, 5),
       high=st.sampled_from([0.0, 0.3, 1.5, 1e16]),
       low=st.sampled_from([0.0, 0.1, -0.7, -1e16]))
def test_two_averages_on_one_metric_each_fire_as_the_exact_mean_says(values, window, high, low):
    """An average above one threshold and another below a second on the same metric:
    the calm test takes the tighter of each side, and each fires on its own crossings."""
    def verdict(op: str, threshold: float) -> Callable[[list[float]], bool | None]:
        def decide(last: list[float]) -> bool | None:
            try:
                mean = math.fsum(last) / window
            except (OverflowError, ValueError):
                return None
            return None if math.isnan(mean) else OPS[op](mean, threshold)
        return decide

    b = book(f'{{ kind = "RUN_METRIC_THRESHOLD", metric = "loss", agg = "avg", '
             f'window = {window}, cmp = ">", threshold = {high!r} }}',
             extra=f"""
[[automations]]
name = "b"
scope = "project:acme/vision"
event = {{ kind = "RUN_METRIC_THRESHOLD", metric = "loss", agg = "avg", window = {window}, cmp = "<=", threshold = {low!r} }}
action = {{ kind = "none" }}
cooldown = "0"
""")
    fired: dict[str, list[int]] = {"a": [], "b": []}
    for i, value in enumerate(values):
        for firing in b.metrics(metrics({"loss": value}), float(i)).firings:
            fired[firing.automation.name].append(i)
    assert fired == {"a": crossings(values, window, verdict(">", high)),
                     "b": crossings(values, window, verdict("<=", low))}
