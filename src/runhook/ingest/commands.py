"""The queries and commands (history, status, enable, redeliver, test, reload, silences),
each a function from its request Struct to its answer Struct; a refusal is Refused. The
socket and HTTPS encode at their edge (`answer`); the console calls the functions."""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import msgspec

from runhook.config.settings import Settings
from runhook.core.status import DaemonStatus, LastExecution
from runhook.delivery import redelivery
from runhook.delivery.actor import Deliveries
from runhook.ingest import protocol, silencing
from runhook.ingest.protocol import (
    ConsoleRotate,
    Enable,
    ExecutionQuery,
    History,
    Query,
    Redeliver,
    Reload,
    SilenceAdd,
    SilenceExpire,
    SilenceList,
    Status,
    TestIntegration,
)
from runhook.ingest.silencing import SilenceView
from runhook.store.database import Store, Write
from runhook.store.rows import Attempt, Execution
from runhook.store.statements import ENABLE_INTEGRATION, REDELIVER
from runhook.triggers.silences import Silences


class Refused(Exception):
    """A query or command that cannot be carried out; the message says why."""


class Executions(msgspec.Struct, kw_only=True):
    executions: list[Execution]


class ExecutionFound(msgspec.Struct, kw_only=True):
    execution: Execution
    attempts: list[Attempt]


class Enabled(msgspec.Struct, kw_only=True):
    integration: str
    was_disabled: str | None  # why it was disabled, if it was


class Redelivered(msgspec.Struct, kw_only=True):
    """The executions queued again; those of a `failed` sweep left out, and why; notes
    on those chosen with something to say (SKIPPED, sent anyway)."""

    redelivered: list[str]
    left_out: dict[str, str]
    notes: dict[str, str]


class Tested(msgspec.Struct, kw_only=True):
    test: dict[str, Any]  # what the endpoint said (DeliveryActor.test)


class Reloaded(msgspec.Struct, kw_only=True):
    reloaded: bool = True
    # The start-only settings that differ from the running ones ("[ingest].listen"):
    # applied at the next restart (config/restart.py).
    restart: list[str] = msgspec.field(default_factory=list)


class Rotated(msgspec.Struct, kw_only=True):
    login_file: str


class OneSilence(msgspec.Struct, kw_only=True):
    silence: SilenceView


class SilenceListing(msgspec.Struct, kw_only=True):
    silences: list[SilenceView]


class Recent(Execution, kw_only=True):
    """A recent execution with its attempts, as the status page lists it."""

    attempt_list: list[Attempt] = msgspec.field(default_factory=list)


class Overview(DaemonStatus, kw_only=True):
    """The status page's data (also /api/status and `runhook status`): the daemon's
    status, each automation's executions of the last 24 h and latest one, and the
    most recent executions with their attempts."""

    recent: list[Recent] = msgspec.field(default_factory=list)
    silences: list[SilenceView] = msgspec.field(default_factory=list)  # active ones


class StatusAnswer(msgspec.Struct, kw_only=True):
    status: Overview


Answer = (Executions | ExecutionFound | StatusAnswer | Enabled | Redelivered | Tested | Reloaded
          | Rotated | OneSilence | SilenceListing)


class Login(Protocol):
    """The console's login token (web/session.py)."""

    path: Path

    def rotate(self) -> None: ...


class SharedCommands(silencing.Keeper, Protocol):
    """The commands that change state, when that state is not this daemon's alone
    (a cluster node's: cluster/commands.py); None on one machine."""

    async def enable(self, query: Enable) -> Enabled: ...

    async def redeliver(self, query: Redeliver) -> Redelivered: ...

    async def test(self, query: TestIntegration) -> Tested: ...


class Daemon(Protocol):
    store: Store
    deliveries: Deliveries
    settings: Settings
    silences: Silences
    awaiting_restart: list[str]

    @property
    def shared_commands(self) -> SharedCommands | None: ...

    @property
    def console_login(self) -> Login | None: ...

    def status(self) -> DaemonStatus: ...

    async def reload(self) -> list[str]: ...


async def answer(query: Query, daemon: Daemon) -> bytes:
    """The answer line of a query or command: the socket's and HTTPS's edge."""
    try:
        return encode(await run(query, daemon))
    except Refused as exc:
        return protocol.refusal(str(exc))


_encode = msgspec.json.Encoder().encode


def encode(answer: Answer) -> bytes:
    """`{"ok":true, ...the answer's fields}` and a newline: every answer has a field."""
    return b'{"ok":true,' + _encode(answer)[1:] + b"\n"


async def run(query: Query, daemon: Daemon) -> Answer:
    match query:
        case History():
            return await history(query, daemon)
        case ExecutionQuery():
            return await execution(query, daemon)
        case Status():
            return StatusAnswer(status=await overview(daemon))
        case Enable():
            return await enable(query, daemon)
        case Redeliver():
            return await redeliver(query, daemon)
        case TestIntegration():
            return await test(query, daemon)
        case Reload():
            return await reload(daemon)
        case ConsoleRotate():
            return rotate(daemon)
        case SilenceAdd() | SilenceList() | SilenceExpire():
            return await silence(query, daemon)
    raise TypeError(f"unhandled request {type(query).__name__}")


async def history(query: History, daemon: Daemon) -> Executions:
    return Executions(executions=await daemon.store.history(
        query.automation, query.state, query.limit, query.since))


async def execution(query: ExecutionQuery, daemon: Daemon) -> ExecutionFound:
    found = await daemon.store.execution(query.id)
    if found is None:
        raise Refused(f"no execution {query.id!r}")
    return ExecutionFound(execution=found, attempts=await daemon.store.attempts(query.id))


async def enable(query: Enable, daemon: Daemon) -> Enabled:
    if daemon.shared_commands is not None:
        return await daemon.shared_commands.enable(query)
    actor = daemon.deliveries.actors.get(query.integration)
    if actor is None:
        raise Refused(f"no integration {query.integration!r}")
    was = actor.disabled
    await daemon.store.commit(Write([(ENABLE_INTEGRATION, [(query.integration,)])]))
    actor.enable()
    return Enabled(integration=query.integration, was_disabled=was)


async def test(query: TestIntegration, daemon: Daemon) -> Tested:
    if daemon.shared_commands is not None:
        return await daemon.shared_commands.test(query)
    actor = daemon.deliveries.actors.get(query.integration)
    if actor is None:
        raise Refused(f"no integration {query.integration!r}")
    return Tested(test=await actor.test(query.payload))


async def reload(daemon: Daemon) -> Reloaded:
    problems = await daemon.reload()
    if problems:
        # As `runhook check-config` says them: every problem, each with the file's path.
        source = daemon.settings.source
        raise Refused("reload refused, the running configuration stays:"
                      + "".join(f"\n{source}: {problem}" for problem in problems))
    return Reloaded(restart=daemon.awaiting_restart)


def rotate(daemon: Daemon) -> Rotated:
    login = daemon.console_login
    if login is None:
        raise Refused("the console is off (server.http is empty)")
    try:
        login.rotate()
    except OSError as exc:
        raise Refused(f"cannot write {login.path}: {exc.strerror or exc}; "
                      "the old token stays") from None
    return Rotated(login_file=str(login.path))


async def silence(query: SilenceAdd | SilenceList | SilenceExpire,
                  daemon: Daemon) -> OneSilence | SilenceListing:
    now = silencing.now_of(daemon)
    try:
        match query:
            case SilenceAdd():
                return OneSilence(silence=await silencing.add(query, daemon, now))
            case SilenceExpire():
                return OneSilence(silence=await silencing.expire(query.id, daemon, now))
            case SilenceList():
                return SilenceListing(silences=silencing.listing(daemon.silences, now))
    except silencing.Refused as exc:
        raise Refused(str(exc)) from None


async def overview(daemon: Daemon, recent: int = 15) -> Overview:
    """The daemon's status with what the history says: per automation, executions
    by state over the last 24 h and the latest one; the most recent executions."""
    status = daemon.status()
    summary = await daemon.store.summary([a.name for a in status.automations],
                                         time.time() - 24 * 3600)
    automations = []
    for automation in status.automations:
        found = summary[automation.name]
        last = LastExecution(**found["last"]) if found["last"] is not None else None
        automations.append(msgspec.structs.replace(automation, counts_24h=found["counts"],
                                                   last=last))
    rows = await daemon.store.history(limit=recent)
    attempts = await daemon.store.attempts_of([r.id for r in rows])
    return Overview(**{**msgspec.structs.asdict(status), "automations": automations},
                    recent=[Recent(**msgspec.structs.asdict(r),
                                   attempt_list=attempts.get(r.id, [])) for r in rows],
                    silences=silencing.listing(daemon.silences, silencing.now_of(daemon),
                                             active_only=True))


async def redeliver(query: Redeliver, daemon: Daemon) -> Redelivered:
    if daemon.shared_commands is not None:
        return await daemon.shared_commands.redeliver(query)
    store = daemon.store
    chosen, answer = await choose(query, daemon)
    now = time.time()
    if chosen:
        await store.commit(Write([(REDELIVER, [("redelivery requested", now, now, e.id)
                                                 for e in chosen])]))
    for name in {e.integration for e in chosen}:
        actor = daemon.deliveries.actors.get(str(name))
        if actor is not None:
            actor.poke()
    return answer


async def choose(query: Redeliver, daemon: Daemon) -> tuple[list[Execution], Redelivered]:
    """The executions `query` may send again under the running configuration, and
    the answer that says so (queuing them is the caller's)."""
    store = daemon.store
    left_out: dict[str, str] = {}
    notes: dict[str, str] = {}
    if query.id is not None:
        found = await store.execution(query.id)
        if found is None:
            raise Refused(f"no execution {query.id!r}")
        why = redelivery.refusal(found, daemon.settings)
        if why is not None:
            raise Refused(f"cannot redeliver {query.id}: {why}")
        chosen = [found]
        said = redelivery.note(found)
        if said is not None:
            notes[found.id] = said
    else:
        assert query.since is not None
        failed = await store.redeliverable(time.time() - query.since, query.automation)
        chosen, left_out = redelivery.sort_failed(failed, daemon.settings)
    return chosen, Redelivered(redelivered=[e.id for e in chosen], left_out=left_out,
                               notes=notes)


def notes_of(answer: Redelivered | Mapping[str, object]) -> str:
    """A redelivery answer's notes as one flash message's tail ("; …"), or ""."""
    notes = answer.notes if isinstance(answer, Redelivered) else answer.get("notes")
    return "".join(f"; {n}" for n in notes.values()) if isinstance(notes, dict) else ""
