"""A run's identity (name, user, group, tags, config) as the daemon remembers it (pure)."""

from __future__ import annotations

from typing import Any, Protocol
from urllib.parse import quote

import msgspec

from runhook.core.events import ConfigValue

# The placeholders a per-scope `run_url` pattern may use.
URL_FIELDS = ("entity", "project", "run_id", "run_name", "group")


class Told(Protocol):
    """What an event (or a logged one, replayed) says about its run."""

    run_name: str
    user: str
    group: str | None
    tags: list[str] | None
    config: dict[str, ConfigValue] | None


class Identity:
    """The latest identity a run's events told. Events may carry `run_id` alone, so
    a field an event leaves out (empty name or user, no group, tags or config) keeps
    what an earlier event said: a metric line without `run_name` still matches a
    `run_name` filter through the remembered name."""

    __slots__ = ("config", "group", "name", "run_id", "tags", "user")

    def __init__(self, run_id: str, name: str = "", user: str = "", group: str | None = None,
                 tags: tuple[str, ...] = (), config: dict[str, ConfigValue] | None = None) -> None:
        self.run_id = run_id
        self.name = name
        self.user = user
        self.group = group
        self.tags = tags  # a tuple: part of the key the filters' answers are remembered by
        self.config = config

    def learn(self, event: Told) -> bool:
        """Take what `event` says about the run; whether anything changed."""
        changed = False
        if event.run_name and event.run_name != self.name:
            self.name, changed = event.run_name, True
        if event.user and event.user != self.user:
            self.user, changed = event.user, True
        if event.group and event.group != self.group:
            self.group, changed = event.group, True
        if event.tags is not None and tuple(event.tags) != self.tags:
            self.tags, changed = tuple(event.tags), True
        if event.config:
            # Merged, not replaced: clients send config as it grows (wandb.config.update).
            merged = {**self.config, **event.config} if self.config else dict(event.config)
            if merged != self.config:
                self.config, changed = merged, True
        return changed

    @property
    def key(self) -> tuple[str, str, str | None, tuple[str, ...]]:
        """What run filters read: runs with equal keys match the same automations."""
        return self.name, self.user, self.group, self.tags


def run_url(pattern: str | None, entity: str, project: str, run: Identity) -> str:
    """The scope's `run_url` pattern filled in, each value URL-quoted; "" without one."""
    if not pattern:
        return ""
    values = {"entity": entity, "project": project, "run_id": run.run_id,
              "run_name": run.name, "group": run.group or ""}
    return pattern.format_map({k: quote(v, safe="") for k, v in values.items()})


def check_url_pattern(pattern: str) -> str | None:
    """Why `pattern` cannot be a run_url, or None."""
    if not pattern.startswith(("https://", "http://")):
        return "expected an http(s) URL pattern"
    try:
        pattern.format_map({k: "x" for k in URL_FIELDS})
    except KeyError as exc:
        return f"unknown placeholder {{{exc.args[0]}}} (use {', '.join(URL_FIELDS)})"
    except (ValueError, IndexError) as exc:
        return f"bad pattern: {exc}"
    return None


def identity_row(run: Identity) -> tuple[Any, ...]:
    """(group, tags JSON, config JSON) for the runs table."""
    return (run.group, msgspec.json.encode(list(run.tags)).decode() if run.tags else None,
            msgspec.json.encode(run.config).decode() if run.config else None)


_tags = msgspec.json.Decoder(list[str])
_config = msgspec.json.Decoder(dict[str, ConfigValue])


def restore_identity(run: Identity, group: str | None, tags: str | None,
                     config: str | None) -> None:
    """Set what identity_row stored."""
    run.group = group
    run.tags = tuple(_tags.decode(tags)) if tags else ()
    run.config = _config.decode(config) if config else None
