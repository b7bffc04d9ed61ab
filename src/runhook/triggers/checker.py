"""What every metric checker answers for one evaluation."""

from __future__ import annotations

from typing import NamedTuple


class Verdict(NamedTuple):
    holds: bool
    values: list[float]  # the values the evaluation read, oldest first
