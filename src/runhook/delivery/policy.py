"""The delivery policy in one place: what is retried, when, and what fails or disables."""

from __future__ import annotations

import random
from email.utils import parsedate_to_datetime
from typing import NamedTuple

# Svix's retry schedule: the first attempt goes at once; these are the waits
# before each retry, so the n-th failed attempt waits SCHEDULE[n - 1]. The first
# retry waits too: an endpoint that just failed is rarely back a millisecond later.
# After the last retry fails the execution is FAILED, about 28 h after creation.
SCHEDULE = (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)
MAX_ATTEMPTS = len(SCHEDULE) + 1  # 8: one at once, then one per entry
JITTER = 0.2
# A Retry-After beyond this is treated as this, so a bad header cannot park an
# execution for weeks.
MAX_RETRY_AFTER = 24 * 3600.0
RETRIED_STATUSES = frozenset({408, 429})


class Outcome(NamedTuple):
    state: str  # FINISHED, PENDING (retry after `delay`) or FAILED
    delay: float | None = None
    reason: str | None = None
    disable: bool = False
    # Failed by the configuration (an automation removed, a template that cannot
    # render), not by the endpoint: it says nothing of the integration's health.
    config_error: bool = False


def retry_delay(attempt: int, rand: float) -> float:
    """Seconds before the attempt after `attempt` (1-based), ±20 % by `rand` in [0, 1)."""
    base = SCHEDULE[attempt - 1]
    return base * (1 - JITTER + 2 * JITTER * rand)


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Retry-After in seconds, from delta-seconds or an HTTP date; None if absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), MAX_RETRY_AFTER)
    try:
        when = parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None
    return min(max(when - now, 0.0), MAX_RETRY_AFTER)


def decide(attempt: int, status: int | None, error: str | None,
           retry_after: float | None = None, refused: bool = False,
           rand: float | None = None) -> Outcome:
    """What follows attempt number `attempt` that got HTTP `status` (None when no
    answer came: `error` says why). `refused` marks errors that no retry can
    fix (a destination the SSRF guard refuses, a template that cannot render)."""
    if status is not None and 200 <= status < 300:
        return Outcome("FINISHED")
    if refused:
        return Outcome("FAILED", reason=error)
    reason = error if status is None else f"HTTP {status}" + (f": {error}" if error else "")
    retryable = status is None or status in RETRIED_STATUSES or status >= 500
    if not retryable:
        return Outcome("FAILED", reason=reason, disable=status == 410)
    if attempt >= MAX_ATTEMPTS:
        return Outcome("FAILED", reason=f"gave up after {attempt} attempts; last: {reason}")
    delay = retry_delay(attempt, random.random() if rand is None else rand)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return Outcome("PENDING", delay=delay, reason=reason)
