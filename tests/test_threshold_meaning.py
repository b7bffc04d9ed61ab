"""One meaning of a threshold: the run book's fast paths (the calm values inline, the
ring's calm bounds, the settled running mean) fire exactly where the plain
definition, written out here, does."""

from __future__ import annotations

import math

from hypothesis import example, given, settings
from hypothesis import strategies as st
from run_helpers import metrics

from runhook.config.model import decode
from runhook.config.settings import build
from runhook.evaluate.calm import dispatch
from runhook.evaluate.ring import calm_bounds
from runhook.evaluate.runbook import RunBook
from runhook.triggers.aggregate import COMPARISONS
from runhook.triggers.threshold import MetricThreshold, ThresholdChecker

# The plain definition, by hand: `aggregate cmp threshold`, NaN never holds.
PLAIN = {">": lambda a, t: a > t, ">=": lambda a, t: a >= t, "<": lambda a, t: a < t,
         "<=": lambda a, t: a <= t, "==": lambda a, t: a == t, "!=": lambda a, t: a != t}


def plain_holds(agg: str, window: int, cmp: str, threshold: float,
                values: list[float]) -> bool | None:
    """None while fewer than `window` values came, or when the aggregate is no number
    (infinities of both signs, or a sum past the largest float)."""
    if len(values) < window:
        return None
    last = values[-window:]
    if agg == "avg":
        try:
            value = math.fsum(last) / window
        except (OverflowError, ValueError):
            return None
    else:
        value = min(last) if agg == "min" else max(last)
    if value != value:  # noqa: PLR0124 - NaN
        return None
    return PLAIN[cmp](value, threshold)


def plain_firings(specs: list[tuple[str, int, str, float]], series: list) -> dict[str, list[int]]:
    """For each automation, the indices where its condition starts to hold (cooldown 0):
    NaN and null are not values; a None answer changes nothing."""
    values: list[float] = []
    active = [False] * len(specs)
    fired: dict[str, list[int]] = {f"a{i}": [] for i in range(len(specs))}
    for index, value in enumerate(series):
        if value is None or value != value:  # noqa: PLR0124 - NaN
            continue
        values.append(value)
        for i, (agg, window, cmp, threshold) in enumerate(specs):
            holds = plain_holds(agg, window, cmp, threshold, values)
            if holds is None:
                continue
            if holds and not active[i]:
                fired[f"a{i}"].append(index)
            active[i] = holds
    return fired


def toml_float(value: float) -> str:
    return repr(value) if math.isfinite(value) else ("inf" if value > 0 else "-inf")


def book_of(specs: list[tuple[str, int, str, float]]) -> RunBook:
    tables = "".join(f"""
[[automations]]
name = "a{i}"
scope = "project:acme/vision"
event = {{ kind = "RUN_METRIC_THRESHOLD", metric = "loss", agg = "{agg}", window = {window}, cmp = "{cmp}", threshold = {toml_float(threshold)} }}
action = {{ kind = "none" }}
cooldown = "0"
""" for i, (agg, window, cmp, threshold) in enumerate(specs))
    return RunBook(build(decode('[server]\nclient_heartbeat = "1s"\n' + tables)).automations)


def book_firings(book: RunBook, series: list) -> dict[str, list[int]]:
    fired: dict[str, list[int]] = {}
    for index, value in enumerate(series):
        for firing in book.metrics(metrics({"loss": value}), float(index)).firings:
            assert firing.action == "FIRE"
            fired.setdefault(firing.automation.name, []).append(index)
    return fired


THRESHOLDS = [0.0, 0.1, 0.3, -0.7, 1.5, 1e16, -1e-300, math.inf, -math.inf]
# Around the thresholds: equal to them, tenths whose sums round, tiny and huge
# magnitudes, infinities; NaN and null, which are not values.
VALUES = st.one_of(st.integers(-20, 20).map(lambda n: n / 10),
                   st.sampled_from([*THRESHOLDS, 5e-324, -5e-324, 1e308, -1e308, -1e16,
                                    math.nan, None]))
# Runs of one value, so rings fill with calm values and stay calm a while.
SERIES = st.lists(st.tuples(VALUES, st.integers(1, 8)), max_size=20).map(
    lambda runs: [value for value, times in runs for _ in range(times)])
SPEC = st.tuples(st.sampled_from(["avg", "avg", "min", "max"]), st.integers(1, 4),
                 st.sampled_from([">", ">=", "<", "<=", ">", ">=", "<", "<=", "==", "!="]),
                 st.sampled_from(THRESHOLDS))


@settings(max_examples=300, deadline=None)
@given(st.lists(SPEC, min_size=1, max_size=3), st.booleans(), SERIES)
@example(specs=[("avg", 3, ">=", 0.3), ("avg", 3, "<", -0.7)], same_window=True,
         series=[0.1] * 8 + [1.0, 0.3, 0.3, 0.3, -0.7, -0.7, -0.7, math.inf, 0.0])
@example(specs=[("avg", 5, "<=", 0.0)], same_window=False,
         series=[-5e-324] + [0.0] * 6 + [1.0] * 5 + [math.inf, -math.inf, 0.0, 0.0, 0.0])
def test_the_fast_paths_fire_exactly_where_the_plain_definition_does(specs, same_window, series):
    if same_window:  # every one an average over the whole ring: the calm fast paths
        specs = [("avg", specs[0][1], cmp, t) for _, _, cmp, t in specs]
    assert book_firings(book_of(specs), series) == \
        {name: at for name, at in plain_firings(specs, series).items() if at}


def checker(cmp: str, threshold: float, window: int = 3) -> ThresholdChecker:
    return ThresholdChecker(MetricThreshold(metric="loss", agg="avg", window=window, cmp=cmp,
                                            threshold=threshold))


def test_the_calm_bounds_derive_from_each_comparisons_side():
    # > and >= hold only above their threshold, < and <= only below: their bounds
    # are the same as calm_bounds of those thresholds; == and != have no side.
    assert [COMPARISONS[c].side for c in (">", ">=", "<", "<=", "==", "!=")] == \
        [1, 1, -1, -1, 0, 0]
    watching = [(None, checker(">=", 2.0)), (None, checker(">", 5.0)),
                (None, checker("<", -1.0))]
    size, watches, calm, low, high = dispatch(3, watching)  # type: ignore[arg-type]
    assert size == 3
    assert calm == calm_bounds([2.0, 5.0], [-1.0], 3)
    # Calm values lie strictly inside: above -1 and below 2 (2.0 itself holds for >=).
    assert low == -1.0 + (1e-9 * 1.0 + 1e-300) and high == 2.0 - (1e-9 * 2.0 + 1e-300)
    assert [quick[2] for _, _, quick in watches] == [1, 1, -1]
    # An == watching the metric: no value is calm, every one goes to the exact path.
    assert dispatch(3, [*watching, (None, checker("==", 0.0))])[2:] == \
        (None, math.inf, -math.inf)  # type: ignore[arg-type]


def test_a_tie_at_the_threshold_holds_for_the_inclusive_comparisons_only():
    # Means by hand: [2, 2, 2] averages exactly 2.0; [1, 2, 3] to 2.0 as well.
    for window, expected in (([2.0, 2.0, 2.0], {">": False, ">=": True, "<": False,
                                                  "<=": True, "==": True, "!=": False}),
                             ([1.0, 2.0, 3.0], {">": False, ">=": True, "<": False,
                                                  "<=": True, "==": True, "!=": False})):
        assert {c: checker(c, 2.0).holds(window) for c in PLAIN} == expected
    # inf and -inf together have no mean: cannot tell, for every comparison.
    assert {checker(c, 0.0, 2).holds([math.inf, -math.inf]) for c in PLAIN} == {None}
    assert checker(">", 1e300, 1).holds([math.inf]) is True  # an infinity is a value
