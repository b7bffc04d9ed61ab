"""Answers to the socket's queries (history, one execution, status), as JSON lines."""

from __future__ import annotations

from typing import Any, Protocol

import msgspec

from runhook import protocol
from runhook.protocol import ExecutionQuery, History, Query, Status
from runhook.store import Store


class StatusSource(Protocol):
    def status(self) -> dict[str, Any]: ...


async def answer(query: Query, store: Store, source: StatusSource) -> bytes:
    match query:
        case History():
            executions = await store.history(query.automation, query.state, query.limit,
                                             query.since)
            return protocol.answer({"executions": msgspec.to_builtins(executions)})
        case ExecutionQuery():
            execution = await store.execution(query.id)
            if execution is None:
                return protocol.error_line(0, f"no execution {query.id!r}").replace(
                    b"line 0: ", b"")
            attempts = await store.attempts(query.id)
            return protocol.answer({"execution": msgspec.to_builtins(execution),
                                    "attempts": msgspec.to_builtins(attempts)})
        case Status():
            return protocol.answer({"status": source.status()})
    raise TypeError(f"unhandled query {type(query).__name__}")
