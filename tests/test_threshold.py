"""RUN_METRIC_THRESHOLD's checker on its own (pure): the window it judges, and what
its configuration errors and descriptions say. Written for `make mutate`'s survivors."""

from __future__ import annotations

import pytest

from runhook.core.schema import FieldError
from runhook.triggers.threshold import MetricThreshold, ThresholdChecker


def checker(window: int = 1, agg: str | None = None, cmp: str = ">",
            threshold: float = 5.0) -> ThresholdChecker:
    return ThresholdChecker(MetricThreshold(metric="loss", agg=agg, window=window, cmp=cmp,
                                            threshold=threshold))  # type: ignore[arg-type]


def test_the_latest_window_values_are_judged_and_fewer_cannot_tell():
    avg3 = checker(3, "avg")
    assert avg3.holds([9.0, 9.0]) is None             # 2 of 3 values: cannot tell yet
    assert avg3.holds([9.0, 3.0, 4.0]) is True        # avg 16/3 = 5.33 > 5
    # Longer than the window: only the newest 3 count (avg 4, not 14.4 over all five).
    assert avg3.holds([30.0, 30.0, 3.0, 4.0, 5.0]) is False
    assert avg3.holds([0.0, 12.0, 3.0, 3.0]) is True   # avg 6 of the newest 3
    assert checker().holds([1.0, 6.0]) is True        # window 1: the newest alone
    assert checker(cmp="<=").holds([5.0]) is True


def test_a_window_without_an_aggregate_is_refused_naming_the_field():
    with pytest.raises(FieldError) as refused:
        checker(2)
    assert (refused.value.field, refused.value.message) == \
        ("agg", "give avg, min or max when window > 1")
    assert checker(1).size == 1  # window 1 needs none


def test_descriptions_name_the_aggregate_only_over_a_window():
    assert checker(threshold=5.0).description == "loss > 5"
    described = checker(3, "max", ">=", 0.5)
    assert described.description == "max(loss) over last 3 >= 0.5"
    assert described.op == ">="
