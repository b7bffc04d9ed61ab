"""The times evaluation reads (wall for records, monotonic for deadlines), and as people read them."""

from __future__ import annotations

import os
import time
from datetime import datetime, timedelta
from typing import Protocol

# Test-only: seconds added to this process's wall clock, so that a test can run a real
# cluster node whose clock is off (tests/test_cluster_clocks.py). Not a setting.
_OFFSET = float(os.environ.get("RUNHOOK_TEST_CLOCK_OFFSET", "0") or 0)
# How far an ingress node's time may stray from the stream's before it is clamped.
INGRESS_TOLERANCE_S = 2.0
# How long a stream timestamp counts in the estimate of the stream's time (a newer
# stream leader's clock replaces an older one's within this).
STREAM_SAMPLE_S = 60.0


def wall_time() -> float:
    """This machine's wall clock (with the test-only offset)."""
    return time.time() + _OFFSET


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
        self._base = wall_time() - time.monotonic()

    def wall(self) -> float:
        return wall_time()  # looked up each call: a test may step it (monkeypatch)

    def monotonic(self) -> float:
        return self._base + time.monotonic()

    def read(self) -> tuple[float, float]:
        return wall_time(), self._base + time.monotonic()


class StreamTime:
    """Cluster mode's time: the events stream's (the time its leader stored each
    message), read on this node's monotonic clock. Every node's stream times agree
    whatever their own wall clocks say, so a deadline counted here from an event's
    time (clamped to the stream's, see `clamp`) ends when it should on any owner.
    Estimated from the stream timestamps this node reads: a message read now was
    stored before now, so (its timestamp - monotonic now) is at most the offset, and
    the largest such value of the last minute is the estimate (off by the freshest
    message's delivery time, milliseconds). Before the first, this node's wall clock."""

    __slots__ = ("_best", "_previous", "_since")

    def __init__(self) -> None:
        self._best: float | None = None
        self._previous: float | None = None
        self._since = time.monotonic()

    def observe(self, stored: float) -> None:
        """A message the stream stored at `stored` (its time) was read just now."""
        mono = time.monotonic()
        if mono - self._since > STREAM_SAMPLE_S:
            self._previous, self._best, self._since = self._best, None, mono
        offset = stored - mono
        if self._best is None or offset > self._best:
            self._best = offset

    def now(self) -> float:
        best = max((o for o in (self._best, self._previous) if o is not None), default=None)
        return wall_time() if best is None else time.monotonic() + best


STREAM_TIME = StreamTime()  # one per process: a cluster node's, shared by its partitions


def clamp(sent: float, stored: float) -> float:
    """An ingress node's time for an event, within INGRESS_TOLERANCE_S of the time the
    stream stored it: a node whose clock is off by more cannot move the event's
    deadlines or its records (its `created_at`). The same on every owner (both
    times are in the message), so an event evaluated again makes the same ids."""
    return min(max(sent, stored - INGRESS_TOLERANCE_S), stored + INGRESS_TOLERANCE_S)


class WallClock:
    """Cluster mode: deadlines and records count on the stream's time (StreamTime),
    which every owner reads alike (both readings agree)."""

    __slots__ = ()

    def wall(self) -> float:
        return STREAM_TIME.now()

    def monotonic(self) -> float:
        return STREAM_TIME.now()

    def read(self) -> tuple[float, float]:
        # One reading for both: two calls differ by microseconds, and that shift would
        # reach a crash's cause (its last-seen, moved to wall time) and change its id.
        now = STREAM_TIME.now()
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
