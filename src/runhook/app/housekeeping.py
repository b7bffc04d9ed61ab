"""Housekeeping: metric-window checkpoints, run eviction, purges of old idempotency ids
and history, failing orphaned executions, and the activity summary a minute."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import NamedTuple

import anyio
import msgspec

from runhook.config.runtime import Runtime
from runhook.config.settings import Settings
from runhook.core import constants
from runhook.core.durations import describe
from runhook.core.metrics import activity_line
from runhook.evaluate.routing import Scopes
from runhook.store.database import Statement, Store, Write, WriteFailed
from runhook.store.statements import (
    FAIL_ORPHANS,
    PURGE_ATTEMPTS,
    PURGE_EVENT_IDS,
    PURGE_EXECUTIONS,
    PURGE_SILENCES,
)
from runhook.triggers.silences import EXPIRED_LISTED_S

log = logging.getLogger("runhook")

# How often the INFO log summarises activity (single executions are DEBUG lines).
ACTIVITY_LOG_S = 60.0
# The checkpoint interval when the configuration says "0".
DEFAULT_CHECKPOINT_S = 5.0


class PurgeFailed(RuntimeError):
    """A purge batch did not commit (the writer logged why); the next round retries."""


class Purged(NamedTuple):
    event_ids: int
    executions: int


class Housekeeping:
    """The daemon's periodic work. Each kind runs on its own clock, so a checkpoint
    waiting on a full inbox delays neither a purge nor the summary; intervals are
    read from the settings at every turn, so a reload reaches them."""

    def __init__(self, runtime: Runtime, store: Store, scopes: Scopes,
                 activity: Callable[[], dict[str, int]],
                 summary_every: float = ACTIVITY_LOG_S) -> None:
        self._runtime = runtime
        self._store = store
        self._scopes = scopes
        self._activity = activity
        self._summary_every = summary_every

    async def run(self) -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._checkpoints, name="checkpoints")
            tg.start_soon(self._purges, name="purges")
            tg.start_soon(self._summaries, name="activity summary")

    async def _checkpoints(self) -> None:
        """Metric windows and changed runs are written every `checkpoint_interval`."""
        while True:
            await anyio.sleep(self._runtime.settings.checkpoint_interval or DEFAULT_CHECKPOINT_S)
            await self._scopes.checkpoint(False, 0.0)

    async def _purges(self) -> None:
        """Every `purge_interval`: evict stale runs, then purge until caught up."""
        while True:
            await anyio.sleep(self._runtime.settings.purge_interval)
            settings = self._runtime.settings
            await self._scopes.checkpoint(True, settings.run_ttl)
            try:
                purged = await purge(self._store, time.time(), settings.history_ttl)
            except PurgeFailed as exc:
                log.warning("housekeeping: purge stopped (%s); the next round retries in %s",
                            exc, describe(settings.purge_interval))
                continue
            if purged.event_ids or purged.executions:
                log.info("housekeeping: forgot %d idempotency ids older than 24h, deleted %d "
                         "settled executions older than %s", purged.event_ids,
                         purged.executions, describe(settings.history_ttl))

    async def _summaries(self) -> None:
        """At INFO, one line a minute saying what happened, when anything did."""
        counts = self._activity()
        since = time.monotonic()
        while True:
            await anyio.sleep(self._summary_every)
            now = time.monotonic()
            previous, counts = counts, self._activity()
            line = activity_line(previous, counts, now - since)
            if line is not None:
                log.info("%s", line)
            since = now


async def purge(store: Store, now: float, history_ttl: float) -> Purged:
    """Forget idempotency ids older than 24 h, and delete settled executions (their
    attempts first) created more than `history_ttl` ago. Each is deleted PURGE_BATCH
    rows at a time until a batch deletes fewer: one batch per round (the old way)
    fell behind any sustained rate above ~8 ids a second. Every batch commits before
    the next is queued, so writes queued meanwhile (acknowledgements) go between."""
    window = now - constants.IDEMPOTENCY_WINDOW_S
    ids = await _until_caught_up(store, [(PURGE_EVENT_IDS, window)])
    cutoff = now - history_ttl
    executions = await _until_caught_up(store, [(PURGE_ATTEMPTS, cutoff),
                                                (PURGE_EXECUTIONS, cutoff)])
    try:  # a handful of rows: one statement, unbatched
        await store.commit(Write([(PURGE_SILENCES, [(now - EXPIRED_LISTED_S,)])]))
    except WriteFailed as exc:
        raise PurgeFailed(str(exc)) from None
    return Purged(ids, executions)


async def _until_caught_up(store: Store, deletes: list[tuple[str, float]]) -> int:
    """Repeat the batched `deletes` (in order, in one commit) until the last one
    deletes fewer than a batch; returns the rows it deleted in all."""
    batch = constants.PURGE_BATCH
    total = 0
    while True:
        statements: list[Statement] = [(sql, [(cutoff, batch)]) for sql, cutoff in deletes]
        write = Write(statements, barrier=True)  # a barrier: in order, and counted
        try:
            await store.commit(write)
        except WriteFailed as exc:
            raise PurgeFailed(str(exc)) from None
        deleted = write.changes[-1]
        total += deleted
        if deleted < batch:
            return total


async def fail_orphans(store: Store, settings: Settings) -> None:
    """PENDING executions of an integration no longer configured would wait forever:
    fail them with the reason (redeliver brings them back)."""
    names = msgspec.json.encode(sorted(settings.integrations)).decode()
    await store.submit(Write([(FAIL_ORPHANS, [(time.time(), names)])]))
