"""Firing on crossings: a condition fires when it becomes true, and re-arms when false (pure)."""

from __future__ import annotations

FIRE = "FIRE"
SKIP = "SKIP"  # a crossing inside the cooldown: recorded as SKIPPED, not sent


def on_crossing(last_fired: float | None, now: float, cooldown: float) -> str:
    """FIRE, or SKIP when the last real firing is less than `cooldown` ago (skipped
    crossings do not extend the cooldown)."""
    if last_fired is not None and now - last_fired < cooldown:
        return SKIP
    return FIRE


def step(active: bool, holds: bool | None, last_fired: float | None, now: float,
         cooldown: float) -> tuple[bool, str | None]:
    """The condition's new `active` flag and what to do. `holds` None means the
    evaluation could not tell (window not full, zero stdev): nothing changes."""
    if holds is None:
        return active, None
    if holds and not active:
        return True, on_crossing(last_fired, now, cooldown)
    return holds, None
