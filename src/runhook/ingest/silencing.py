"""Silence commands, one rule for the socket (`command.silence_*`) and the loopback HTTP
API: add (committed, then in force), list (active, and expired within 24 h), expire."""

from __future__ import annotations

import secrets
import time
from dataclasses import replace
from typing import Annotated, Protocol

import msgspec

from runhook.config.settings import Settings
from runhook.core.bounds import hit
from runhook.core.clock import STREAM_TIME
from runhook.core.durations import describe, parse_duration
from runhook.core.schema import FieldError
from runhook.ingest.protocol import SilenceAdd, SilenceComment
from runhook.store.database import Store, Write, WriteFailed
from runhook.store.statements import EXPIRE_SILENCE, INSERT_SILENCE
from runhook.triggers.silences import EXPIRED_LISTED_S, Silence, Silences, compile_silence


class Refused(ValueError):
    """A silence command that cannot be carried out; the message says why."""


class SilenceView(msgspec.Struct, kw_only=True):
    """A silence as the CLI, the API and the status page show it."""

    id: str
    automation: str | None  # None: every automation
    run_name: str | None
    group: str | None
    collection: str | None
    comment: str
    created_at: float
    ends_at: float
    expired_at: float | None
    active: bool


class Keeper(Protocol):
    """Silences kept elsewhere than this daemon's database: a cluster's, which every
    node applies (cluster/commands.py)."""

    async def silence_add(self, request: SilenceAdd, now: float) -> SilenceView: ...

    async def silence_expire(self, silence_id: str, now: float) -> SilenceView: ...


class Daemon(Protocol):
    store: Store
    settings: Settings
    silences: Silences

    @property
    def shared_commands(self) -> Keeper | None: ...


def now_of(daemon: Daemon) -> float:
    """The time silences are added, expired and listed at: on a cluster node the
    cluster's (the stream's, which its owners compare silences with), so a node whose
    clock is off neither shortens nor lengthens a silence (docs/cluster.md, Clocks)."""
    return STREAM_TIME.now() if daemon.shared_commands is not None else time.time()


def view(silence: Silence, now: float) -> SilenceView:
    def source(pattern: object) -> str | None:
        return getattr(pattern, "source", None)

    return SilenceView(id=silence.id, automation=silence.automation,
                       run_name=source(silence.run_name), group=source(silence.group),
                       collection=source(silence.collection), comment=silence.comment,
                       created_at=silence.created_at, ends_at=silence.ends_at,
                       expired_at=silence.expired_at, active=silence.active(now))


async def add(request: SilenceAdd, daemon: Daemon, now: float) -> SilenceView:
    """Commit a new silence, then put it in force: firings evaluated after the answer
    (the next lines of the same connection included) see it."""
    if daemon.shared_commands is not None:
        return await daemon.shared_commands.silence_add(request, now)
    silence = compose(request, daemon, now)
    row = (silence.id, silence.automation, request.run_name, request.group,
           request.collection, silence.comment, silence.created_at, silence.ends_at)
    try:
        await daemon.store.commit(Write([(INSERT_SILENCE, [row])]))
    except WriteFailed as exc:
        raise Refused(f"not saved: {exc}") from None
    daemon.silences.put(silence)
    return view(silence, now)


def compose(request: SilenceAdd, daemon: Daemon, now: float) -> Silence:
    """The silence `request` asks for, checked against the configuration and the
    bounds; nothing kept yet (one machine commits it, a cluster node puts it in
    the cluster's bucket)."""
    if request.automation is not None and daemon.settings.automation(request.automation) is None:
        # A typo would otherwise silence nothing, quietly.
        raise Refused(f"no automation {request.automation!r} in the running configuration")
    try:
        seconds = parse_duration(request.duration) if isinstance(request.duration, str) \
            else float(request.duration)
    except ValueError as exc:
        raise Refused(f"field `duration`: {exc}") from None
    if seconds <= 0:
        raise Refused("field `duration`: expected a duration above 0")
    _within_bounds(request, seconds, daemon, now)
    try:
        silence = compile_silence(f"si_{secrets.token_hex(4)}", request.automation,
                                  request.run_name, request.group, request.collection,
                                  request.comment, now, now + seconds)
    except FieldError as exc:
        raise Refused(f"field `{exc.field}`: {exc.message}") from None
    return silence


def _within_bounds(request: SilenceAdd, seconds: float, daemon: Daemon, now: float) -> None:
    """Refuse a silence past a bound (README, "What is guaranteed"): each one is
    compiled RE2 in memory and listed on every status page (its comment is bounded by
    the protocol), and a silence of a
    century is a way to switch alerting off unseen."""
    found = _past_bound(request, seconds, daemon, now)
    if found is not None:
        bound, message = found
        hit(bound, f"silence refused: {message}")
        raise Refused(message)


def _past_bound(request: SilenceAdd, seconds: float, daemon: Daemon,
                now: float) -> tuple[str, str] | None:
    """(bound, why) for the first bound the silence would pass, or None."""
    found = _past_size(daemon.settings, seconds, request.run_name, request.group,
                       request.collection)
    if found is not None:
        return found
    daemon.silences.forget_before(now - EXPIRED_LISTED_S)
    kept = len(daemon.silences.all)
    if kept >= daemon.settings.config.server.max_silences:
        return "silences", too_many(kept)
    return None


def too_many(kept: int) -> str:
    return (f"{kept} silences are kept (active, and ended within 24 h), the most [server] "
            "max_silences allows: expire one, or wait")


def _past_size(settings: Settings, seconds: float, run_name: str | None, group: str | None,
               collection: str | None) -> tuple[str, str] | None:
    """(bound, why) for a silence's duration or pattern past its bound, or None."""
    server, longest = settings.config.server, settings.max_silence_duration
    if seconds > longest:
        return "silence_duration", (f"field `duration`: {describe(seconds)} is longer than "
                                    f"{describe(longest)}, the most [server] "
                                    "max_silence_duration allows")
    for field, pattern in (("run_name", run_name), ("group", group), ("collection", collection)):
        if pattern is not None and len(pattern) > server.max_silence_pattern:
            return "silence_pattern", (f"field `{field}`: {len(pattern)} characters, more than "
                                       f"the {server.max_silence_pattern} [server] "
                                       "max_silence_pattern allows")
    return None


# Finite, and far from float's edges: a time in a cluster's bucket is anyone's bytes.
_Time = Annotated[float, msgspec.Meta(ge=-1e15, le=1e15)]


class Stored(msgspec.Struct, array_like=True, forbid_unknown_fields=True):
    """A silence as a cluster's bucket holds it (cluster/shared.py writes these fields
    in this order); strict types, so an entry nobody checked cannot reach a firing."""

    id: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    automation: str | None
    run_name: str | None
    group: str | None
    collection: str | None
    comment: SilenceComment
    created_at: _Time
    ends_at: _Time
    expired_at: _Time | None = None


def accepted(data: bytes, key: str, settings: Settings) -> Silence:
    """The silence a cluster's bucket holds under `key`, held to the bounds `silence
    add` holds one to on one machine (the count aside: the caller knows what it keeps);
    raises Refused saying why it is not one to apply."""
    try:
        stored = msgspec.json.decode(data, type=Stored)
    except msgspec.DecodeError as exc:  # ValidationError is one
        raise Refused(f"not a silence: {exc}") from None
    if stored.id != key:  # deleting the key (`expire`, forgetting) would leave it in force
        raise Refused(f"its id {stored.id!r} is not its key")
    seconds = stored.ends_at - stored.created_at
    if seconds < 0:
        raise Refused("it ends before it starts")
    found = _past_size(settings, seconds, stored.run_name, stored.group, stored.collection)
    if found is not None:
        raise Refused(found[1])
    try:
        return compile_silence(stored.id, stored.automation, stored.run_name, stored.group,
                               stored.collection, stored.comment, stored.created_at,
                               stored.ends_at, stored.expired_at)
    except FieldError as exc:
        raise Refused(f"field `{exc.field}`: {exc.message}") from None


async def expire(silence_id: str, daemon: Daemon, now: float) -> SilenceView:
    """End a silence now (it stays listed for 24 h); expiring an ended one changes nothing."""
    if daemon.shared_commands is not None:
        return await daemon.shared_commands.silence_expire(silence_id, now)
    silence = daemon.silences.get(silence_id)
    if silence is None:
        raise Refused(f"no silence {silence_id!r} (expired ones are forgotten after 24 h)")
    if silence.expired_at is None and silence.active(now):
        try:
            await daemon.store.commit(Write([(EXPIRE_SILENCE, [(now, now, silence_id)])]))
        except WriteFailed as exc:
            raise Refused(f"not saved: {exc}") from None
        silence = replace(silence, ends_at=now, expired_at=now)
        daemon.silences.put(silence)
    return view(silence, now)


def listing(silences: Silences, now: float, active_only: bool = False) -> list[SilenceView]:
    """Active silences, then (unless `active_only`) those that ended in the last 24 h."""
    silences.forget_before(now - EXPIRED_LISTED_S)
    views = [view(s, now) for s in silences.all]
    views.sort(key=lambda v: (not v.active, -v.created_at))
    return [v for v in views if v.active] if active_only else views


async def load(store: Store, now: float) -> Silences:
    """The silences a (re)started daemon knows: active ones, and those ended within 24 h.
    A stored pattern that no longer compiles cannot be: it compiled when added."""
    rows = await store.silences(now - EXPIRED_LISTED_S)
    return Silences(compile_silence(*row) for row in rows)
