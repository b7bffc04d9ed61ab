"""LogLimit: one line per interval for what strangers can cause, counting the rest."""

from __future__ import annotations

from runhook.core import logs
from runhook.core.logs import LogLimit


def test_one_line_per_interval_and_the_next_counts_what_was_held(monkeypatch):
    clock = [100.0]
    monkeypatch.setattr(logs.time, "monotonic", lambda: clock[0])
    limit = LogLimit(interval=10.0)
    assert limit.allow() == 0          # the first is logged
    assert [limit.allow() for _ in range(5)] == [None] * 5  # held back
    clock[0] = 109.9
    assert limit.allow() is None
    clock[0] = 110.0
    assert limit.allow() == 6          # logged, saying six were not
    assert limit.allow() is None
    clock[0] = 200.0
    assert limit.allow() == 1
