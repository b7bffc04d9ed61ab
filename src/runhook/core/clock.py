"""The two times evaluation reads: wall time for records, a monotonic clock for deadlines."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    """What a scope actor asks the time. `wall` names when something happened (an
    execution's created_at, a run's last-seen in its row); `monotonic` is what every
    deadline (heartbeats, stalls, settles, digest windows, cooldowns) is counted on,
    so a step of the wall clock (NTP, a VM resumed) moves none of them."""

    def wall(self) -> float: ...

    def monotonic(self) -> float: ...


class SystemClock:
    """One machine: `time.time()`, and `time.monotonic()` offset to read the wall time
    at the clock's creation, so that the two differ only by the steps since (the
    evaluator converts by that difference at the store's edge)."""

    __slots__ = ("_base",)

    def __init__(self) -> None:
        self._base = time.time() - time.monotonic()

    def wall(self) -> float:
        return time.time()  # looked up each call: a test may step it (monkeypatch)

    def monotonic(self) -> float:
        return self._base + time.monotonic()


class WallClock:
    """Cluster mode: every node counts deadlines on the stream's time, which is the
    publishers' wall time, so deadlines are wall times there (both readings agree)."""

    __slots__ = ()

    def wall(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.time()
