"""Bounds on what clients can make the daemon keep: the refusal, its count, its log line."""

from __future__ import annotations

import logging

from runhook.core.logs import LogLimit

log = logging.getLogger("runhook.bounds")

# Every refusal for a bound starts with this: cluster mode tells it from a failed commit.
AT_BOUND = "at a bound"

# Hits per bound since the start, process-wide (like the log): /metrics shows them as
# runhook_bound_hits_total{bound=...}. The evaluator, which owns no metrics object,
# counts here too.
HITS: dict[str, int] = {}
_LIMITS: dict[str, LogLimit] = {}


class AtBound(Exception):
    """An event refused because a bound is reached; nothing of it was done, so the
    book needs no reload. The message says which bound, where, and its setting."""

    def __init__(self, bound: str, message: str) -> None:
        super().__init__(f"{AT_BOUND}: {message}")
        self.bound = bound


def too_many_runs(run_id: str, count: int) -> AtBound:
    # Refused, not a live run evicted: a run's crash alert must not vanish because a
    # stranger sent new run ids; a finished run goes an hour after it ended.
    return AtBound("runs", f"run {run_id!r} is not tracked: this scope tracks {count} runs, "
                           "the most [server] max_runs_per_scope allows (event refused, "
                           "nothing recorded)")


def hit(bound: str, message: str) -> None:
    """Count one hit of `bound` and log it, at most one line per 10 s per bound: a
    client hammering a bound must not flood the log."""
    HITS[bound] = HITS.get(bound, 0) + 1
    limit = _LIMITS.get(bound)
    if limit is None:
        limit = _LIMITS[bound] = LogLimit()
    held = limit.allow()
    if held is not None:
        more = f" ({held} more since the last such line)" if held else ""
        log.warning("%s%s", message, more)
