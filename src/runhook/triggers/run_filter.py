"""The run filters every run trigger takes: `run_name` (regex) and `user` (a name or a list)."""

from __future__ import annotations

from typing import Annotated

import msgspec

from runhook.core.schema import Table
from runhook.triggers.pattern import compile_filter

MetricName = Annotated[str, msgspec.Meta(min_length=1)]
Window = Annotated[int, msgspec.Meta(ge=1, le=10_000)]


class RunFilter(Table, tag_field="kind", frozen=True):
    run_name: str | None = None
    user: str | list[str] | None = None


class RunMatcher:
    """Built once; `matches(run_name, user)` says whether a run is watched at all."""

    __slots__ = ("run_name", "users")

    def __init__(self, config: RunFilter) -> None:
        self.run_name = compile_filter("run_name", config.run_name)
        users = config.user
        self.users = frozenset([users] if isinstance(users, str) else users) \
            if users is not None else None

    def matches(self, run_name: str, user: str) -> bool:
        if self.run_name is not None and not self.run_name.search(run_name):
            return False
        return self.users is None or user in self.users
