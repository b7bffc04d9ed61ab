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
    assert outcome.delay == 0.0  # the first retry is immediate


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422, 301, 307])
def test_other_statuses_fail_at_once(status):
    outcome = decide(1, status, None)
    assert outcome.state == "FAILED" and not outcome.disable
    assert outcome.reason == f"HTTP {status}"


def test_410_fails_and_disables():
    assert decide(1, 410, "gone") == Outcome("FAILED", reason="HTTP 410: gone", disable=True)


def test_refused_destination_is_never_retried():
    assert decide(1, None, "destination refused: x", refused=True).state == "FAILED"


def test_schedule_with_jitter_bounds():
    # attempt n is followed by the n-th delay: 0, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h
    expected = [0, 5, 300, 1800, 7200, 18000, 36000, 36000]
    for attempt, base in enumerate(expected, start=1):
        assert retry_delay(attempt, 0.0) == pytest.approx(base * 0.8)
        assert retry_delay(attempt, 0.5) == pytest.approx(base)
        assert retry_delay(attempt, 0.999999) == pytest.approx(base * 1.2, rel=1e-5)


def test_gives_up_after_the_last_retry():
    assert MAX_ATTEMPTS == 9
    assert decide(8, 500, None, rand=0.5) == Outcome("PENDING", 36000.0, "HTTP 500")
    final = decide(9, 500, None)
    assert final.state == "FAILED" and final.reason == "gave up after 9 attempts; last: HTTP 500"


def test_retry_after_is_honoured_when_longer():
    assert decide(1, 429, None, retry_after=30.0, rand=0.5).delay == 30.0
    assert decide(3, 429, None, retry_after=30.0, rand=0.5).delay == 300.0


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
