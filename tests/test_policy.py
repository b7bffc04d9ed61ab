"""The delivery policy and the token bucket: pure functions, checked by hand."""

from __future__ import annotations

from email.utils import formatdate

import pytest

from runhook.delivery.policy import MAX_ATTEMPTS, Outcome, decide, parse_retry_after, retry_delay
from runhook.delivery.ratelimit import TokenBucket


@pytest.mark.parametrize("status", [200, 201, 204, 299])
def test_2xx_finishes(status):
    assert decide(1, status, None) == Outcome("FINISHED")


@pytest.mark.parametrize("status, error", [(None, "timed out after 15s"), (None, "refused"),
                                           (408, None), (429, None), (500, None), (503, "busy")])
def test_retryable_failures_are_retried(status, error):
    outcome = decide(1, status, error, rand=0.5)
    assert outcome.state == "PENDING"
    assert outcome.delay == 5.0  # the first retry waits 5 s, not 0


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422, 301, 307])
def test_other_statuses_fail_at_once(status):
    outcome = decide(1, status, None)
    assert outcome.state == "FAILED" and not outcome.disable
    assert outcome.reason == f"HTTP {status}"


def test_410_fails_and_disables():
    assert decide(1, 410, "gone") == Outcome("FAILED", reason="HTTP 410: gone", disable=True)


def test_refused_destination_is_never_retried():
    assert decide(1, None, "destination refused: x", refused=True).state == "FAILED"


# The retry schedule (Svix's), written out by hand: attempt 1 goes at once; after attempt n fails,
# the wait is the n-th entry, ±20 %. Columns: attempt, rand=0 (-20 %), rand=0.5,
# rand->1 (+20 %).
SCHEDULE_BY_HAND = [
    (1, 4.0, 5.0, 6.0),                  # 5 s
    (2, 240.0, 300.0, 360.0),            # 5 min
    (3, 1440.0, 1800.0, 2160.0),         # 30 min
    (4, 5760.0, 7200.0, 8640.0),         # 2 h
    (5, 14400.0, 18000.0, 21600.0),      # 5 h
    (6, 28800.0, 36000.0, 43200.0),      # 10 h
    (7, 28800.0, 36000.0, 43200.0),      # 10 h
]


@pytest.mark.parametrize("attempt, low, middle, high", SCHEDULE_BY_HAND)
def test_schedule_with_jitter_bounds(attempt, low, middle, high):
    assert retry_delay(attempt, 0.0) == pytest.approx(low)
    assert retry_delay(attempt, 0.5) == pytest.approx(middle)
    assert retry_delay(attempt, 0.999999) == pytest.approx(high, rel=1e-5)
    assert decide(attempt, 503, None, rand=0.5) == Outcome("PENDING", middle, "HTTP 503")


def test_no_retry_is_immediate():
    """The smallest wait anywhere in the schedule is the first retry's, at its lowest."""
    assert min(decide(n, None, "refused", rand=0.0).delay for n in range(1, 8)) == 4.0


def test_gives_up_after_the_last_retry():
    # 1 attempt at once + 7 retries; the 8th failure is final.
    assert MAX_ATTEMPTS == 8
    assert decide(7, 500, None, rand=0.5) == Outcome("PENDING", 36000.0, "HTTP 500")
    final = decide(8, 500, None)
    assert final.state == "FAILED" and final.reason == "gave up after 8 attempts; last: HTTP 500"
    assert decide(8, None, "timed out after 15s").reason == \
        "gave up after 8 attempts; last: timed out after 15s"


def test_whole_schedule_spans_about_28_hours():
    """5 s + 5 min + 30 min + 2 h + 5 h + 10 h + 10 h = 99,305 s before FAILED."""
    total = sum(decide(n, 500, None, rand=0.5).delay for n in range(1, 8))
    assert total == 99305.0


def test_retry_after_is_honoured_when_longer():
    assert decide(1, 429, None, retry_after=30.0, rand=0.5).delay == 30.0
    assert decide(1, 429, None, retry_after=2.0, rand=0.5).delay == 5.0  # never shorter
    assert decide(1, 503, None, retry_after=0.0, rand=0.0).delay == 4.0
    assert decide(3, 429, None, retry_after=30.0, rand=0.5).delay == 1800.0
    assert decide(2, 429, None, retry_after=86400.0, rand=0.5).delay == 86400.0


def test_retry_after_does_not_outlast_the_attempt_limit():
    """A Retry-After on the last attempt does not buy another one."""
    assert decide(8, 429, None, retry_after=30.0).state == "FAILED"


def test_parse_retry_after():
    now = 1_700_000_000.0
    assert parse_retry_after("120", now) == 120.0
    assert parse_retry_after(formatdate(now + 90, usegmt=True), now) == 90.0
    assert parse_retry_after(formatdate(now - 90, usegmt=True), now) == 0.0
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after(None, now) is None
    assert parse_retry_after("99999999", now) == 24 * 3600.0


def test_token_bucket_spaces_calls_at_the_rate():
    bucket = TokenBucket(rate=2.0, burst=2.0, now=0.0)
    assert bucket.take(0.0) == 0.0
    assert bucket.take(0.0) == 0.0
    assert bucket.take(0.0) == pytest.approx(0.5)   # third call: wait for a token
    assert bucket.take(0.0) == pytest.approx(1.0)   # fourth: one more token after that
    assert bucket.take(10.0) == 0.0                 # refilled, capped at the burst
    assert bucket.take(10.0) == 0.0
    assert bucket.take(10.0) == pytest.approx(0.5)


def test_the_edges_of_success_a_refusals_reason_and_the_default_jitter():
    """Survivors of `make mutate`: 2xx ends at 299 (300 is a redirect, not retried); a
    refused destination fails with the guard's own reason; without `rand` the jitter
    comes from random(), inside the ±20 % of the first wait (5 s)."""
    assert decide(1, 299, None) == Outcome("FINISHED")
    assert decide(1, 300, None) == Outcome("FAILED", reason="HTTP 300")
    assert decide(1, None, "10.0.0.1 is a private address", refused=True) == \
        Outcome("FAILED", reason="10.0.0.1 is a private address")
    outcome = decide(1, 503, None)
    assert outcome.state == "PENDING" and outcome.delay is not None
    assert 4.0 <= outcome.delay <= 6.0
