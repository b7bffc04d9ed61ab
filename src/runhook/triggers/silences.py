"""Silences: a filter over firings for a while. A firing a silence matches is recorded
SKIPPED with the silence's id and comment instead of being sent (pure)."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from runhook.core.logs import LogLimit
from runhook.triggers.pattern import Pattern, compile_filter

log = logging.getLogger("runhook")
_BROKEN = LogLimit()

# Expired silences stay listed (and in the database) this long, so people can see
# what was muted a moment ago; then housekeeping forgets them.
EXPIRED_LISTED_S = 24 * 3600.0


@dataclass(frozen=True, slots=True)
class Silence:
    id: str
    automation: str | None  # None: every automation
    run_name: Pattern | None
    group: Pattern | None
    collection: Pattern | None
    comment: str
    created_at: float
    ends_at: float  # an expired-by-hand silence ends when it was expired
    expired_at: float | None = None  # when `runhook silence expire` ended it

    def active(self, now: float) -> bool:
        return self.created_at <= now < self.ends_at

    def matches(self, automation: str, context: Mapping[str, Any]) -> bool:
        """Every filter given must match; a filter on what the firing lacks (a
        collection on a run event) does not."""
        if self.automation is not None and self.automation != automation:
            return False
        for pattern, key in ((self.run_name, "run_name"), (self.collection,
                                                          "artifact_collection_name"),
                             # Runs carry no group yet (run health adds `${run_group}`):
                             # until they do, a silence with a group matches nothing.
                             (self.group, "run_group")):
            if pattern is None:
                continue
            value = context.get(key)
            if not isinstance(value, str) or not pattern.search(value):
                return False
        return True

    def reason(self) -> str:
        return f"silenced by {self.id}: {self.comment}"


def compile_silence(silence_id: str, automation: str | None, run_name: str | None,
                    group: str | None, collection: str | None, comment: str,
                    created_at: float, ends_at: float,
                    expired_at: float | None = None) -> Silence:
    """A silence from its stored or requested fields (the store's row order); a bad
    pattern raises FieldError naming it."""
    return Silence(silence_id, automation, compile_filter("run_name", run_name),
                   compile_filter("group", group), compile_filter("collection", collection),
                   comment, created_at, ends_at, expired_at)


def silenced_by(silences: Iterable[Silence], automation: str, context: Mapping[str, Any],
                now: float) -> Silence | None:
    """The first active silence matching a firing of `automation` with `context`. A
    silence whose check raises (a malformed one that got past every door) matches
    nothing: the firing is sent, not lost with its event (logged, at a limited rate)."""
    for silence in silences:
        try:
            if silence.active(now) and silence.matches(automation, context):
                return silence
        except Exception as exc:  # noqa: BLE001 - a false alert over a missed one
            held = _BROKEN.allow()
            if held is not None:
                log.error("silence %r cannot be checked (%s: %s); it mutes nothing%s",
                          getattr(silence, "id", "?"), type(exc).__name__, exc,
                          f" ({held} more since the last such line)" if held else "")
    return None


class Silences:
    """The silences the daemon knows (active, and expired within EXPIRED_LISTED_S),
    shared by every scope's evaluator. The command that changes them commits to the
    database first, then replaces the tuple here: an evaluator reads one whole tuple."""

    def __init__(self, silences: Iterable[Silence] = ()) -> None:
        self.all: tuple[Silence, ...] = tuple(silences)

    def put(self, silence: Silence) -> None:
        self.all = (*(s for s in self.all if s.id != silence.id), silence)

    def get(self, silence_id: str) -> Silence | None:
        return next((s for s in self.all if s.id == silence_id), None)

    def active(self, now: float) -> list[Silence]:
        return [s for s in self.all if s.active(now)]

    def forget_before(self, cutoff: float) -> None:
        """Drop silences that ended before `cutoff`."""
        self.all = tuple(s for s in self.all if s.ends_at >= cutoff)
