"""Every node's history: the history stream applied to its own SQLite, so the CLI,
the console and the HTTP API answer alike on any node. A durable consumer per
node remembers how far it got; a record applied twice changes nothing."""

from __future__ import annotations

import logging
from typing import Annotated, Any

import anyio
import msgspec
import nats.errors
from nats.js.api import AckPolicy, ConsumerConfig

from runhook.cluster.bus import HISTORY, HISTORY_SUBJECT, Bus, take
from runhook.core.executions import State
from runhook.store.database import Statement, Store, Write, WriteFailed
from runhook.store.statements import (
    INSERT_EXECUTION,
    INSERT_GROUPED,
    MIRROR_ATTEMPT,
    MIRROR_UPDATE,
    REDELIVER,
)

log = logging.getLogger("runhook.cluster")
FETCH = 1000
RETRY_S = 1.0
ACK_WAIT_S = 10.0


class Mirror:
    def __init__(self, bus: Bus, store: Store) -> None:
        self._bus = bus
        self._store = store
        self.applied = 0

    async def run(self) -> None:
        js = self._bus.js
        subscription = await self._bus.subscribe("subscribing to the history", lambda:
            js.pull_subscribe(HISTORY_SUBJECT, durable=f"mirror-{self._bus.settings.node}",
                              stream=HISTORY, config=ConsumerConfig(
                                  ack_policy=AckPolicy.EXPLICIT, ack_wait=ACK_WAIT_S, max_ack_pending=-1)))
        while True:
            try:
                await self._round(subscription)
            except (TimeoutError, nats.errors.TimeoutError):
                continue
            except Exception as exc:  # noqa: BLE001 - NATS away: wait, then again
                log.warning("cluster: mirroring the history stream: %s", exc)
                await anyio.sleep(1.0)

    async def _round(self, subscription: Any) -> None:
        messages = await take(subscription, FETCH, 1.0)
        if not messages:
            return
        statements: list[Statement] = []
        for msg in messages:
            try:
                statements.extend(_statements(msg.data))
            except (ValueError, msgspec.DecodeError) as exc:
                log.error("cluster: a history record is not one of ours: %s", exc)
        # In order: an attempt's update must follow its execution's insert. A write
        # that fails (the disk, not the records) is tried again before anything else
        # is fetched. Each message is acked on its own: with AckPolicy.ALL the first
        # ack of a restarted node covered what its last run had fetched and not
        # applied (a test lost seven attempts that way). What is fetched and never
        # acked comes back after ACK_WAIT_S; applying a record twice changes nothing.
        while True:
            try:
                await self._store.commit(Write(statements, barrier=True))
                break
            except WriteFailed as exc:
                log.warning("cluster: applying %d history records failed: %s; trying again",
                            len(messages), exc)
                await anyio.sleep(RETRY_S)
        for msg in messages:
            await msg.ack()
        self.applied += len(messages)


# The shapes every field must have before SQLite sees it: a record of another shape
# (not ours) is refused alone, and never fails the commit of the records around it.
_Int = Annotated[int, msgspec.Meta(ge=0, le=2**62)]


class _Row(msgspec.Struct, array_like=True):
    id: str
    automation: str
    scope: str
    event_kind: str
    event_type: str
    event_id: str | None
    action_kind: str
    integration: str | None
    state: State
    reason: str | None
    context: str
    run_id: str | None
    created_at: float
    updated_at: float
    next_attempt_at: float | None
    digest_id: str | None = None


class _Attempt(msgspec.Struct, array_like=True):
    execution_id: str
    number: _Int
    started_at: float
    duration_ms: float
    status: _Int | None
    error: str | None
    response: str | None


class _Update(msgspec.Struct, array_like=True):
    state: State
    reason: str | None
    updated_at: float
    next_attempt_at: float | None
    attempts: _Int
    id: str


class _Redelivery(msgspec.Struct, array_like=True):
    reason: str
    updated_at: float
    next_attempt_at: float
    id: str


def _statements(data: bytes) -> list[Statement]:
    record = msgspec.msgpack.decode(data, type=list[Any])
    kind = record[0] if record else None
    if kind == "created" and len(record) == 2:  # a commit's executions, in one record
        return [_created(msgspec.convert(row, _Row)) for row in record[1]]
    if kind == "redeliver" and len(record) == 2:  # back to PENDING, a fresh schedule
        return [(REDELIVER, [msgspec.structs.astuple(msgspec.convert(one, _Redelivery))
                            for one in record[1]])]
    if kind != "attempt" or len(record) != 4:
        raise ValueError("not a created, attempt or redeliver record")
    created = _created(msgspec.convert(record[3], _Row))
    attempt = msgspec.structs.astuple(msgspec.convert(record[1], _Attempt))
    update = msgspec.structs.astuple(msgspec.convert(record[2], _Update))
    # The execution first (ignored when there): its own record may come later.
    return [created, (MIRROR_ATTEMPT, [attempt]), (MIRROR_UPDATE, [update])]


def _created(row: _Row) -> Statement:
    values = msgspec.structs.astuple(row)
    if row.digest_id is None:
        return (INSERT_EXECUTION.if_new, [values[:15]])
    return (INSERT_GROUPED.if_new, [values])
