"""A token bucket: pure arithmetic on a clock the caller passes in."""

from __future__ import annotations


class TokenBucket:
    """`rate` tokens per second, holding at most `burst`. `take(now)` spends one
    token and returns how long to wait before using it (0 when one was there)."""

    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: float | None = None, now: float = 0.0) -> None:
        self.rate = rate
        self.burst = max(1.0, burst if burst is not None else rate)
        self.tokens = self.burst
        self.stamp = now

    def take(self, now: float) -> float:
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        self.tokens -= 1.0
        if self.tokens >= 0:
            return 0.0
        return -self.tokens / self.rate

    def retune(self, rate: float, now: float) -> None:
        """Another rate from `now` (a cluster node's share of it changed): what was
        earned at the old rate is kept, within the new burst, so a share that grows
        does not bring a fresh burst, and one that shrinks keeps no more than it."""
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        self.rate = rate
        self.burst = max(1.0, rate)
        self.tokens = min(self.burst, self.tokens)
