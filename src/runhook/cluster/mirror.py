"""Every node's history: the history stream applied to its own SQLite, so the CLI,
the console and the HTTP API answer alike on any node. A durable consumer per
node remembers how far it got; a record applied twice changes nothing."""

from __future__ import annotations

import logging
from typing import Any

import anyio
import msgspec
import nats.errors
from nats.js.api import AckPolicy, ConsumerConfig

from runhook.cluster.bus import HISTORY, HISTORY_SUBJECT, Bus, decode
from runhook.store.database import Statement, Store, Write
from runhook.store.statements import INSERT_EXECUTION, INSERT_GROUPED

log = logging.getLogger("runhook.cluster")
_CREATED = INSERT_EXECUTION.replace("INSERT", "INSERT OR IGNORE", 1)
_CREATED_GROUPED = INSERT_GROUPED.replace("INSERT", "INSERT OR IGNORE", 1)
_ATTEMPT = ("INSERT INTO attempts (execution_id, number, started_at, duration_ms, status, "
            "error, response) SELECT ?1,?2,?3,?4,?5,?6,?7 WHERE EXISTS (SELECT 1 FROM "
            "executions WHERE id = ?1) AND NOT EXISTS (SELECT 1 FROM attempts WHERE "
            "execution_id = ?1 AND number = ?2)")
# Only forward: a late copy of an earlier attempt does not undo a later one.
_UPDATE = ("UPDATE executions SET state = ?1, reason = ?2, updated_at = ?3, "
           "next_attempt_at = ?4, attempts = ?5 WHERE id = ?6 AND attempts < ?5")
FETCH = 1000


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
                                  ack_policy=AckPolicy.ALL, ack_wait=60.0, max_ack_pending=-1)))
        while True:
            try:
                await self._round(subscription)
            except (TimeoutError, nats.errors.TimeoutError):
                continue
            except Exception as exc:  # noqa: BLE001 - NATS away: wait, then again
                log.warning("cluster: mirroring the history stream: %s", exc)
                await anyio.sleep(1.0)

    async def _round(self, subscription: Any) -> None:
        messages = await subscription.fetch(FETCH, timeout=1.0)
        if not messages:
            return
        statements: list[Statement] = []
        for msg in messages:
            try:
                statements.extend(_statements(decode(msg.data, list)))
            except (ValueError, TypeError, IndexError, msgspec.DecodeError) as exc:
                log.error("cluster: a history record is not one of ours: %s", exc)
        # In order: an attempt's update must follow its execution's insert.
        await self._store.commit(Write(statements, barrier=True))
        await messages[-1].ack()  # AckPolicy.ALL: everything up to it
        self.applied += len(messages)


def _statements(record: list[Any]) -> list[Statement]:
    kind = record[0]
    if kind == "created":
        row = tuple(record[1])
        if len(row) not in (15, 16):
            raise ValueError(f"an execution row of {len(row)} columns")
        return [(_CREATED_GROUPED if len(row) == 16 else _CREATED, [row])]
    if kind == "attempt":
        attempt, update = tuple(record[1]), tuple(record[2])
        if len(attempt) != 7 or len(update) != 6:
            raise ValueError("an attempt record of the wrong shape")
        return [(_ATTEMPT, [attempt]), (_UPDATE, [update])]
    raise ValueError(f"unknown record kind {kind!r}")
