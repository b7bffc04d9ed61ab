"""The timer heap: lazy cancels do not let stale entries pile up (issue 23, item 3)."""

from __future__ import annotations

from runhook.evaluate.timers import BEAT, COMPACT_FLOOR, STALL, Timers


def test_a_run_flapping_running_and_finished_keeps_the_heap_small():
    # A run going running -> finished a hundred thousand times: each start arms its
    # heartbeat and stall deadlines, each finish cancels both. Nothing is live at
    # the end, so the heap holds at most the floor below which it is not rebuilt.
    timers = Timers()
    for flap in range(100_000):
        timers.arm(BEAT, "r1", 1000.0 + flap)
        timers.arm(STALL, "r1", 2000.0 + flap)
        timers.cancel(BEAT, "r1")
        timers.cancel(STALL, "r1")
    assert len(timers) == 0
    assert timers.heap_size() <= COMPACT_FLOOR + 1
    assert timers.next() is None


def test_stale_entries_never_outnumber_live_ones_past_the_floor():
    # 1,000 live runs, each flapping 50 times: the heap stays within twice the
    # live entries (plus one push that triggers the rebuild).
    timers = Timers()
    for run in range(1000):
        timers.arm(BEAT, f"r{run}", 5000.0 + run)
    for flap in range(50):
        for run in range(1000):
            timers.cancel(BEAT, f"r{run}")
            timers.arm(BEAT, f"r{run}", 5000.0 + run + flap)
            assert timers.heap_size() <= 2 * len(timers) + 1
    assert len(timers) == 1000


def test_a_deadline_moved_earlier_leaves_no_stale_pile_either():
    # arm() with an earlier deadline pushes again; the later entry is stale.
    timers = Timers()
    for step in range(10_000):
        timers.arm(BEAT, "r1", 1_000_000.0 - step)
    assert len(timers) == 1
    assert timers.heap_size() <= COMPACT_FLOOR + 1
    assert timers.next() == 1_000_000.0 - 9_999


def test_after_rebuilds_the_due_order_and_the_live_set_are_unchanged():
    timers = Timers()
    for run in range(200):
        timers.arm(BEAT, f"r{run}", float(run))
    for run in range(0, 200, 2):  # cancel the even runs: 100 stale, 100 live
        timers.cancel(BEAT, f"r{run}")
    for run in range(1, 200, 2):  # move every odd run earlier by half a second
        timers.arm(BEAT, f"r{run}", run - 0.5)
    assert timers.heap_size() <= 2 * len(timers) + 1
    assert timers.next() == 0.5
    due = timers.due(100.0)
    # odd runs 1..99 moved to 0.5..98.5 are due by 100; run 101 is at 100.5
    assert due == [(BEAT, f"r{run}") for run in range(1, 101, 2)]
    assert len(timers) == 50
    assert timers.due(1000.0) == [(BEAT, f"r{run}") for run in range(101, 200, 2)]
    assert timers.next() is None
