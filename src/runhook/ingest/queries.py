"""Answers to the socket's queries and commands: history, status, enable, redeliver, test,
silences."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Protocol

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


class Recent(Execution, kw_only=True):
    """A recent execution with its attempts, as the status page lists it."""

    attempt_list: list[Attempt] = msgspec.field(default_factory=list)


class Overview(DaemonStatus, kw_only=True):
    """The status page's data (also /api/status and `runhook status`): the daemon's
    status, each automation's executions of the last 24 h and latest one, and the
    most recent executions with their attempts."""

    recent: list[Recent] = msgspec.field(default_factory=list)
    silences: list[SilenceView] = msgspec.field(default_factory=list)  # active ones


class Login(Protocol):
    """The console's login token (web/session.py)."""

    path: Path

    def rotate(self) -> None: ...


class Daemon(Protocol):
    store: Store
    deliveries: Deliveries
    settings: Settings
    silences: Silences

    @property
    def console_login(self) -> Login | None: ...

    def status(self) -> DaemonStatus: ...

    async def reload(self) -> list[str]: ...


async def answer(query: Query, daemon: Daemon) -> bytes:
    store = daemon.store
    match query:
        case History():
            executions = await store.history(query.automation, query.state, query.limit,
                                             query.since)
            return protocol.answer({"executions": msgspec.to_builtins(executions)})
        case ExecutionQuery():
            execution = await store.execution(query.id)
            if execution is None:
                return protocol.refusal(f"no execution {query.id!r}")
            attempts = await store.attempts(query.id)
            return protocol.answer({"execution": msgspec.to_builtins(execution),
                                    "attempts": msgspec.to_builtins(attempts)})
        case Status():
            return protocol.answer({"status": await overview(daemon)})
        case Enable():
            actor = daemon.deliveries.actors.get(query.integration)
            if actor is None:
                return protocol.refusal(f"no integration {query.integration!r}")
            was = actor.disabled
            await store.commit(Write([(ENABLE_INTEGRATION, [(query.integration,)])]))
            actor.enable()
            return protocol.answer({"integration": query.integration, "was_disabled": was})
        case Redeliver():
            return await _redeliver(query, daemon)
        case TestIntegration():
            actor = daemon.deliveries.actors.get(query.integration)
            if actor is None:
                return protocol.refusal(f"no integration {query.integration!r}")
            return protocol.answer({"test": await actor.test(query.payload)})
        case Reload():
            problems = await daemon.reload()
            if problems:
                return protocol.refusal("reload refused, the running configuration stays: "
                                        + "; ".join(problems))
            return protocol.answer({"reloaded": True})
        case ConsoleRotate():
            login = daemon.console_login
            if login is None:
                return protocol.refusal("the console is off (server.http is empty)")
            try:
                login.rotate()
            except OSError as exc:
                return protocol.refusal(f"cannot write {login.path}: {exc.strerror or exc}; "
                                        "the old token stays")
            return protocol.answer({"login_file": str(login.path)})
        case SilenceAdd() | SilenceList() | SilenceExpire():
            return await _silence(query, daemon)
    raise TypeError(f"unhandled request {type(query).__name__}")


async def _silence(query: SilenceAdd | SilenceList | SilenceExpire, daemon: Daemon) -> bytes:
    now = time.time()
    try:
        match query:
            case SilenceAdd():
                return protocol.answer({"silence": await silencing.add(query, daemon, now)})
            case SilenceExpire():
                return protocol.answer({"silence": await silencing.expire(query.id, daemon,
                                                                          now)})
            case SilenceList():
                return protocol.answer({"silences": silencing.listing(daemon.silences, now)})
    except silencing.Refused as exc:
        return protocol.refusal(str(exc))


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
                    silences=silencing.listing(daemon.silences, time.time(), active_only=True))


async def _redeliver(query: Redeliver, daemon: Daemon) -> bytes:
    store = daemon.store
    left_out: dict[str, str] = {}
    notes: dict[str, str] = {}  # chosen, with something to say (SKIPPED, sent anyway)
    if query.id is not None:
        execution = await store.execution(query.id)
        if execution is None:
            return protocol.refusal(f"no execution {query.id!r}")
        why = redelivery.refusal(execution, daemon.settings)
        if why is not None:
            return protocol.refusal(f"cannot redeliver {query.id}: {why}")
        chosen = [execution]
        said = redelivery.note(execution)
        if said is not None:
            notes[execution.id] = said
    else:
        assert query.since is not None
        failed = await store.redeliverable(time.time() - query.since, query.automation)
        chosen, left_out = redelivery.sort_failed(failed, daemon.settings)
    now = time.time()
    if chosen:
        await store.commit(Write([(REDELIVER, [("redelivery requested", now, now, e.id)
                                                 for e in chosen])]))
    for name in {e.integration for e in chosen}:
        actor = daemon.deliveries.actors.get(str(name))
        if actor is not None:
            actor.poke()
    return protocol.answer({"redelivered": [e.id for e in chosen], "left_out": left_out,
                            "notes": notes})


def notes_of(answer: dict[str, object]) -> str:
    """A redelivery answer's notes as one flash message's tail ("; …"), or ""."""
    notes = answer.get("notes")
    return "".join(f"; {n}" for n in notes.values()) if isinstance(notes, dict) else ""
