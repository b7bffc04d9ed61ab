"""Cooldowns of artifact automations, per (automation, collection) (docs/wandb.md): when
each last fired, restored from the database and committed with the firing."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from runhook.config.settings import Automation
from runhook.store.database import Statement
from runhook.store.statements import UPSERT_COOLDOWN

# (automation, collection) pairs remembered per scope; past it the ones whose cooldown
# is over are forgotten first (they decide nothing), then the oldest.
MOST_REMEMBERED = 100_000


class Cooldowns:
    """When each (automation, collection) last fired, for automations with a cooldown.
    Times are monotonic readings (the clock every deadline runs on); the database
    holds wall times, moved by the evaluator's shift on the way in and out."""

    __slots__ = ("fired",)

    def __init__(self) -> None:
        self.fired: dict[tuple[str, str], float] = {}

    def restore(self, rows: Iterable[tuple[Any, ...]], automations: list[Automation]) -> None:
        """Rows (automation, collection, digest, fired_at) of automations still defined
        as they were: a changed definition starts with no cooldown, as run flags do."""
        digests = {a.name: a.digest for a in automations}
        self.fired = {(name, collection): fired_at
                      for name, collection, digest, fired_at in rows
                      if digests.get(name) == digest}

    def left(self, automation: Automation, collection: str, now: float) -> float | None:
        """Seconds of cooldown left for a firing now; None: it may fire."""
        if automation.cooldown <= 0:
            return None
        last = self.fired.get((automation.name, collection))
        if last is None or now - last >= automation.cooldown:
            return None
        return automation.cooldown - (now - last)

    def fire(self, scope: str, automation: Automation, collection: str,
             now: float, shift: float = 0.0) -> Statement | None:
        """Record a firing at monotonic `now`; the statement commits it, as the wall
        time `now + shift`, with the execution."""
        if automation.cooldown <= 0:
            return None
        if len(self.fired) >= MOST_REMEMBERED:
            self._prune(now)
        self.fired[(automation.name, collection)] = now
        return (UPSERT_COOLDOWN, [(scope, automation.name, collection, automation.digest,
                                   now + shift)])

    def _prune(self, now: float) -> None:
        # Without a cooldown longer than a day, what fired a day ago decides nothing.
        oldest = sorted(self.fired.items(), key=lambda item: item[1])
        for key, _ in oldest[:max(1, len(oldest) // 10)]:
            del self.fired[key]
