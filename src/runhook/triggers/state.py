"""RUN_STATE: a run entering one of the watched states."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from runhook.triggers.run_filter import RunFilter, span

# The state the daemon gives a running run that fell silent (docs/run-health.md). A client
# that reports `crashed` itself is `failed` (as W&B treats it): `crashed` alone
# means only the silent deaths the daemon saw.
CRASHED = "crashed"
RUNNING = "running"
TERMINAL = frozenset({"finished", "failed", CRASHED, "killed"})


class RunStateTrigger(RunFilter, tag="RUN_STATE", kw_only=True, frozen=True):
    """A run's state changing into one of `states` (`failed` includes `crashed`)."""

    states: Annotated[list[Literal["running", "finished", "failed", "crashed"]],
                      msgspec.Meta(min_length=1)]
    # How long a running run may be silent before the daemon calls it crashed, for
    # the runs this automation watches; the server's heartbeat_timeout by default.
    heartbeat_timeout: str | None = None


def normalize(state: str) -> str:
    """A reported run state as RUN_STATE sees it: a client's `crashed` counts as
    failed; killed stays killed, which no automation can ask for, so it never fires."""
    return "failed" if state == CRASHED else state


class StateChecker:
    """Fires when a run's state changes into one of `states`."""

    __slots__ = ("description", "states", "timeout", "watches_crashes")

    def __init__(self, config: RunStateTrigger) -> None:
        states: set[str] = set(config.states)
        if "failed" in states:
            states.add(CRASHED)  # a silent death is a failure too
        self.states = frozenset(states)
        self.watches_crashes = CRASHED in states
        self.description = "run state becomes " + " or ".join(config.states)
        self.timeout = None if config.heartbeat_timeout is None \
            else span("heartbeat_timeout", config.heartbeat_timeout)

    def fires(self, previous: str | None, current: str) -> bool:
        """`previous` and `current` normalized; killed never fires, a repeat never fires,
        and a crashed run later reported failed is not a second failure."""
        if current == previous or current not in self.states:
            return False
        return not (previous == CRASHED and current == "failed")


def from_config(config: RunStateTrigger) -> StateChecker:
    return StateChecker(config)
