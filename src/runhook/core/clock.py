"""The times evaluation reads (wall for records, monotonic for deadlines), and as people read them."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    """What a scope actor asks the time. `wall` names when something happened (an
    execution's created_at, a run's last-seen in its row); `monotonic` is what every
    deadline (heartbeats, stalls, settles, digest windows, cooldowns) is counted on,
    so a step of the wall clock (NTP, a VM resumed) moves none of them."""

    def wall(self) -> float: ...

    def monotonic(self) -> float: ...

    def read(self) -> tuple[float, float]:
        """Both, at one moment: (wall, monotonic)."""
        ...


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

    def read(self) -> tuple[float, float]:
        return time.time(), self._base + time.monotonic()


class WallClock:
    """Cluster mode: every node counts deadlines on the stream's time, which is the
    publishers' wall time, so deadlines are wall times there (both readings agree)."""

    __slots__ = ()

    def wall(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.time()

    def read(self) -> tuple[float, float]:
        # One reading for both: two calls differ by microseconds, and that shift would
        # reach a crash's cause (its last-seen, moved to wall time) and change its id.
        now = time.time()
        return now, now


def local_time(ts: float) -> str:
    """A time as people read it, in this machine's zone with the zone said once:
    `2026-11-26 11:24:16 UTC`, or `2026-11-26 12:24:16 UTC+01:00` elsewhere."""
    local = datetime.fromtimestamp(ts).astimezone()
    return f"{local.strftime('%Y-%m-%d %H:%M:%S')} {zone_name(local.utcoffset())}"


def zone_name(offset: timedelta | None = None) -> str:
    """`UTC` or `UTC+01:00` (this machine's offset now, if none is given). The offset,
    not the zone's abbreviation: those repeat ("IST"), and "UTC (UTC+0000)" said it twice."""
    if offset is None:
        offset = datetime.now().astimezone().utcoffset()
    minutes = round(offset.total_seconds() / 60) if offset else 0
    if not minutes:
        return "UTC"
    sign = "+" if minutes > 0 else "-"
    return f"UTC{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
