"""RUN_STATE: a run entering one of the watched states."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from runhook.triggers.run_filter import RunFilter


class RunStateTrigger(RunFilter, tag="RUN_STATE", kw_only=True, frozen=True):
    """A run's state changing into one of `states` (crashed counts as failed)."""

    states: Annotated[list[Literal["running", "finished", "failed"]], msgspec.Meta(min_length=1)]


def normalize(state: str) -> str:
    """A run state as RUN_STATE sees it: crashed counts as failed; killed stays
    killed, which no automation can ask for, so it never fires."""
    return "failed" if state == "crashed" else state


class StateChecker:
    """Fires when a run's state changes into one of `states`."""

    __slots__ = ("description", "states")

    def __init__(self, config: RunStateTrigger) -> None:
        self.states = frozenset(config.states)
        self.description = "run state becomes " + " or ".join(config.states)

    def fires(self, previous: str | None, current: str) -> bool:
        """`previous` and `current` normalized; killed never fires, a repeat never fires."""
        return current != previous and current in self.states


def from_config(config: RunStateTrigger) -> StateChecker:
    return StateChecker(config)
