"""Which moved metrics a look reads from the history and which it takes from
runs/search alone (the latest point, when it is the one new point): pure logic of
tracking_marks, no server."""

from __future__ import annotations

import msgspec

from runhook.sources import tracking_marks as marks
from runhook.sources.tracking_api import Metric, MlflowRun, RunData, RunInfo


def run(*latest: Metric) -> MlflowRun:
    return MlflowRun(RunInfo(run_id="r1", experiment_id="1"), RunData(metrics=list(latest)))


def read(history: list[Metric], latest: Metric) -> marks.RunMark:
    """The mark after a look that read `history` (one page) with `latest` shown."""
    reading = marks.Reading("r1", latest.key, None)
    reading.take(history, False)
    _, mark, done = marks.run_events("s", "acme", "p", None, run(latest), None, [reading], 0.0)
    assert done
    return mark


def loss(step: int, timestamp: int, value: float = 1.0) -> Metric:
    return Metric("loss", value, timestamp, step)


def test_one_step_on_is_taken_from_runs_search_with_the_ids_a_history_read_gives():
    mark = read([loss(0, 100), loss(1, 200)], loss(1, 200))
    new = loss(2, 300, 0.5)
    [reading] = marks.readings(run(new), mark)
    assert reading.done and reading.points == [new]  # no history call
    assert (reading.new.count, reading.new.last_step, reading.new.last_timestamp) == (3, 2, 300)
    known, known_mark, _ = marks.run_events("s", "acme", "p", None, run(new), mark, [reading], 1.0)
    # The same look had it read the history from the mark's last point on.
    paged = marks.Reading("r1", "loss", mark.metrics["loss"])
    assert paged.offset == 1
    paged.take([loss(1, 200), new], False)
    from_history, after, _ = marks.run_events("s", "acme", "p", None, run(new), mark,
                                              [paged], 1.0)
    assert known == from_history and len(known) == 1
    # And the same mark: the same point sorted last, three points read, the order kept.
    assert known_mark.metrics == after.metrics
    assert after.metrics["loss"] == marks.MetricMark(2, 300, 3, 300, 2, True)


def test_a_gap_a_timestamp_alone_or_an_earlier_time_is_read_from_the_history():
    mark = read([loss(0, 100), loss(1, 200)], loss(1, 200))
    for latest in (loss(3, 300),  # two steps on: the step between is not shown
                   loss(1, 250),  # the step logged again
                   loss(2, 150)):  # sorts before the last point read
        [reading] = marks.readings(run(latest), mark)
        assert not reading.done and reading.points == [], latest
    assert marks.readings(run(loss(1, 200)), mark) == []  # nothing moved


def test_a_series_that_repeated_or_went_back_a_step_is_always_read():
    for history in ([loss(0, 100), loss(1, 150), loss(1, 200)],  # step 1 twice
                    [loss(0, 100), loss(2, 150), loss(1, 200)]):  # back from 2 to 1
        mark = read(history, loss(max(p.step for p in history), 200))
        assert not mark.metrics["loss"].ordered
        latest = loss(mark.metrics["loss"].step + 1, 300)
        [reading] = marks.readings(run(latest), mark)
        assert not reading.done, history


def test_a_mark_from_a_cursor_written_before_the_order_was_kept_is_read():
    old = msgspec.msgpack.encode(["RUNNING", None, 0.0, {"loss": [1, 200, 2, 200, 1]}])
    mark = msgspec.msgpack.decode(old, type=marks.RunMark)
    assert mark.metrics["loss"].ordered is False
    [reading] = marks.readings(run(loss(2, 300)), mark)
    assert not reading.done
    # Its earlier points were never checked: it stays read from the history.
    reading.take([loss(1, 200), loss(2, 300)], False)
    _, mark, _ = marks.run_events("s", "acme", "p", None, run(loss(2, 300)), mark,
                                  [reading], 1.0)
    assert mark.metrics["loss"].ordered is False
    assert not marks.readings(run(loss(3, 400)), mark)[0].done
