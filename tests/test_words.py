"""What people read: counts whose nouns agree, times that say their zone once, attempts in
words (pure; the commands that print them are exercised in test_cli and test_silences)."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta

import pytest

from runhook.cli.show import attempt, table
from runhook.core.clock import local_time, zone_name
from runhook.core.metrics import activity_line
from runhook.core.words import count


def test_counts_agree_with_their_nouns():
    assert [count(n, "scope") for n in (0, 1, 2)] == ["0 scopes", "1 scope", "2 scopes"]
    assert count(1, "retry", "retries") == "1 retry" and count(3, "retry", "retries") == "3 retries"
    assert count(1500, "event") == "1,500 events"
    line = activity_line({}, {"events": 1, "executions": 1, "success": 1, "retry": 1,
                              "failed": 0}, 60)
    assert line == "last 60s: 1 event, 1 execution, 1 delivered, 1 retry scheduled, 0 failed"


def test_the_zone_is_said_once_as_an_offset():
    assert zone_name(timedelta(0)) == "UTC"                       # not "UTC (UTC+0000)"
    assert zone_name(timedelta(hours=1)) == "UTC+01:00"
    assert zone_name(timedelta(hours=5, minutes=30)) == "UTC+05:30"
    assert zone_name(timedelta(hours=-3, minutes=-30)) == "UTC-03:30"


@pytest.fixture
def zone():
    """Set the process's zone for one test, and put it back."""
    before = os.environ.get("TZ")

    def set_to(name: str) -> None:
        os.environ["TZ"] = name
        time.tzset()
    yield set_to
    if before is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = before
    time.tzset()


def test_times_are_local_with_their_zone(zone):
    ts = datetime(2026, 11, 26, 11, 24, 16, tzinfo=UTC).timestamp()
    zone("UTC")
    assert local_time(ts) == "2026-11-26 11:24:16 UTC"
    zone("Europe/Berlin")                                          # CET in November
    assert local_time(ts) == "2026-11-26 12:24:16 UTC+01:00"
    zone("America/St_Johns")                                       # NST, -3:30
    assert local_time(ts) == "2026-11-26 07:54:16 UTC-03:30"


def test_an_attempt_says_what_it_got():
    assert attempt(200, None, 5.2) == "HTTP 200 in 5 ms"
    assert attempt(503, "busy", 12) == "HTTP 503 in 12 ms (busy)"
    assert attempt(None, "connection refused", 5) == "no answer after 5 ms (connection refused)"
    assert attempt(None, None, 40) == "sent in 40 ms"               # an email: no HTTP status


def test_a_table_has_a_header_over_aligned_columns():
    assert table(("ID", "WHO", "NOTE"), [("si_1", "(all)", "x y"), ("si_22", "a", "z")]) == [
        "ID     WHO    NOTE",
        "si_1   (all)  x y",
        "si_22  a      z"]


def test_the_console_flash_carries_a_redelivery_note():
    from runhook.ingest.commands import notes_of
    assert notes_of({"redelivered": ["ex_1"], "left_out": {}, "notes": {}}) == ""
    assert notes_of({"notes": {"ex_1": "ex_1 was not sent when it fired (silenced by si_1: "
                                        "x); it is sent now anyway"}}) == \
        "; ex_1 was not sent when it fired (silenced by si_1: x); it is sent now anyway"
