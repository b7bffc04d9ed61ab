"""RUN_STATE: a run entering one of the watched states."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from runhook.triggers.run_filter import MetricName, RunFilter, Window


class RunStateTrigger(RunFilter, tag="RUN_STATE", kw_only=True):
    """A run's state changing into one of `states` (crashed counts as failed)."""

    states: Annotated[list[Literal["running", "finished", "failed"]], msgspec.Meta(min_length=1)]
