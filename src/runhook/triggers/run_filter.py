"""The run filters every run trigger takes: `run_name` and `group` (regexes), `user` (a name
or a list) and `tags` (all must be present)."""

from __future__ import annotations

from typing import Annotated

import msgspec

from runhook.core.durations import parse_duration
from runhook.core.schema import FieldError, Table
from runhook.triggers.pattern import compile_filter

MetricName = Annotated[str, msgspec.Meta(min_length=1)]
Window = Annotated[int, msgspec.Meta(ge=1, le=10_000)]


class RunFilter(Table, tag_field="kind", frozen=True):
    run_name: str | None = None
    user: str | list[str] | None = None
    group: str | None = None
    tags: list[str] | None = None


class RunMatcher:
    """Built once; `matches(run_name, user, group, tags)` says whether a run is watched."""

    __slots__ = ("group", "run_name", "tags", "users")

    def __init__(self, config: RunFilter) -> None:
        self.run_name = compile_filter("run_name", config.run_name)
        self.group = compile_filter("group", config.group)
        self.tags = frozenset(config.tags or ())
        users = config.user
        self.users = frozenset([users] if isinstance(users, str) else users) \
            if users is not None else None

    def matches(self, run_name: str, user: str, group: str | None = None,
                tags: tuple[str, ...] = ()) -> bool:
        if self.run_name is not None and not self.run_name.search(run_name):
            return False
        if self.group is not None and (group is None or not self.group.search(group)):
            return False  # a group filter asks for a group: a run without one is not in it
        if self.tags and not self.tags.issubset(tags):
            return False
        return self.users is None or user in self.users


def span(field: str, text: str, allow_zero: bool = False) -> float:
    """A trigger's duration field in seconds; FieldError names `field`."""
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        raise FieldError(field, str(exc)) from None
    if seconds <= 0 and not allow_zero:
        raise FieldError(field, "expected a duration above 0")
    return seconds
