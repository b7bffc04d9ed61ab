"""What every metric checker answers for one evaluation."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple


class Verdict(NamedTuple):
    holds: bool
    values: list[float]  # the values the evaluation read, oldest first


class HoldsFromVerdict:
    """`holds` for a checker that cannot tell more cheaply than its full `evaluate`
    (the threshold checker can, and answers `holds` itself)."""

    __slots__ = ()

    def evaluate(self, window: Sequence[float]) -> Verdict | None:
        raise NotImplementedError

    def holds(self, window: Sequence[float]) -> bool | None:
        verdict = self.evaluate(window)
        return None if verdict is None else verdict.holds
