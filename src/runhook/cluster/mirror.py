"""Every node's history: the history stream applied to its own SQLite, so the CLI,
the console and the HTTP API answer alike on any node. A durable consumer per
node remembers how far it got; a record applied twice changes nothing, and a
record that is not one of ours is logged, counted and acknowledged, never retried."""

from __future__ import annotations

import logging
import time
from typing import Any

import anyio
import nats.errors
from nats.js.api import AckPolicy, ConsumerConfig

from runhook.cluster.bus import HISTORY, HISTORY_SUBJECT, Bus, take
from runhook.cluster.records import Foreign, statements
from runhook.store.database import Statement, Store, Write, WriteFailed

log = logging.getLogger("runhook.cluster")
FETCH = 1000
RETRY_S = 1.0
ACK_WAIT_S = 10.0
REACHED_POLL_S = 0.5  # how often `reached` asks, at most, while nothing is applied here
# A refused record is logged at most once a minute per kind it claimed (a flood of
# them must not flood the journal); the rest are counted, and told with the next line.
FOREIGN_LOG_S = 60.0


class Mirror:
    def __init__(self, bus: Bus, store: Store) -> None:
        self._bus = bus
        self._store = store
        self.applied = 0  # records applied (or refused) and acknowledged
        self.progress_at = time.monotonic()  # when a record was last acknowledged
        self.rejected: dict[str, int] = {}  # refused records, by the kind they claimed
        self.failing: str | None = None  # why the last commit failed, until one succeeds
        self._logged: dict[str, tuple[float, int]] = {}  # kind -> (when, count then)
        self._moved = anyio.Event()  # set at each round acknowledged

    @property
    def store(self) -> Store:
        """The node's history, which this mirror keeps."""
        return self._store

    @property
    def durable(self) -> str:
        return f"mirror-{self._bus.settings.node}"

    async def run(self) -> None:
        js = self._bus.js
        subscription = await self._bus.subscribe("subscribing to the history", lambda:
            js.pull_subscribe(HISTORY_SUBJECT, durable=self.durable,
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
            self.progress_at = time.monotonic()  # nothing waiting: not behind
            return
        records: list[list[Statement]] = []
        for msg in messages:
            try:
                records.append(statements(msg.data))
            except Foreign as exc:
                self._refused(exc)
        # In order: an attempt's update must follow its execution's insert. Each
        # message is acked on its own: with AckPolicy.ALL the first ack of a
        # restarted node covered what its last run had fetched and not applied (a
        # test lost seven attempts that way). What is fetched and never acked comes
        # back after ACK_WAIT_S; applying a record twice changes nothing.
        await self._apply(records)
        for msg in messages:
            await msg.ack()
        self.applied += len(messages)
        self.progress_at = time.monotonic()
        self._moved.set()
        self._moved = anyio.Event()

    async def reached(self, seq: int, timeout: float) -> bool:
        """True once every history record up to stream sequence `seq` is applied here
        (JetStream's ack floor of this node's consumer: a record is acknowledged once
        applied, and the floor is where all before it are, a run before this one's
        included); False if that took longer than `timeout` (behind, or failing)."""
        with anyio.move_on_after(timeout):
            while True:
                info = await self._bus.js.consumer_info(HISTORY, self.durable)
                if info.ack_floor is not None and (info.ack_floor.stream_seq or 0) >= seq:
                    return True
                with anyio.move_on_after(REACHED_POLL_S):
                    await self._moved.wait()
        return False

    async def _apply(self, records: list[list[Statement]]) -> None:
        """All together; if that fails, each alone: a record SQLite refuses while an
        empty write commits is refused like a foreign one (the records passed every
        check we know of, so this is a last resort); a disk that refuses everything
        is tried again before anything else is fetched."""
        while True:
            try:
                await self._store.commit(Write([s for r in records for s in r], barrier=True))
                self.failing = None
                return
            except WriteFailed as exc:
                self.failing = str(exc)
                log.warning("cluster: applying %d history records failed: %s", len(records), exc)
            kept: list[list[Statement]] = []
            for index, record in enumerate(records):
                try:
                    await self._store.commit(Write(record, barrier=True))
                except WriteFailed as exc:
                    try:
                        await self._store.commit(Write([]))
                    except WriteFailed:
                        kept = records[index:]  # not the record: the database
                        break
                    self._refused(Foreign("unstorable", str(exc)))
            if not kept:
                self.failing = None
                return
            records = kept
            await anyio.sleep(RETRY_S)

    def _refused(self, exc: Foreign) -> None:
        kind = exc.kind
        count = self.rejected[kind] = self.rejected.get(kind, 0) + 1
        now = time.monotonic()
        when, then = self._logged.get(kind, (-FOREIGN_LOG_S, 0))
        if now - when >= FOREIGN_LOG_S:
            since = count - then - 1
            log.error("cluster: a history record is not one of ours, acknowledged and "
                      "skipped: %s%s", exc,
                      f" ({since} more of this kind since the last such line)" if since else "")
            self._logged[kind] = (now, count)
