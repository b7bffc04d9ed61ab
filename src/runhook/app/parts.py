"""The parts every daemon is composed of (app/lifecycle.py runs them): the database
writer, the delivery actors, the scope actors, and the socket that feeds them."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from anyio.abc import TaskGroup

from runhook.app.housekeeping import fail_orphans
from runhook.config.runtime import Runtime
from runhook.config.settings import Settings
from runhook.delivery.actor import Deliveries
from runhook.evaluate.routing import Scopes
from runhook.ingest.ingress import Ingress
from runhook.store.database import Store

log = logging.getLogger("runhook")

# How long a stopping daemon waits for open connections to be answered (with the
# deliveries' drain, `server.drain_timeout`, inside systemd's 90 s TimeoutStopSec).
DRAIN_CONNECTIONS_S = 10.0


class Writer:
    """The database's one writer: the first part started, the last stopped (it
    commits what every other part queued before it returns)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.running = False
        self._done = anyio.Event()

    async def start(self, tg: TaskGroup) -> None:
        await tg.start(self._run, name="database writer")

    async def _run(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        self.running = True
        try:
            await self.store.run(task_status=task_status)
        finally:
            self.running = False
            self._done.set()

    async def stop(self) -> None:
        self.store.finish()  # the writer commits what is queued, then returns
        await self._done.wait()


class Delivery:
    """The delivery actors, one per integration; they outlive the scope actors that
    hand them executions. Stopping lets deliveries in flight finish (within
    `drain_timeout`); what is unsent stays PENDING for the next start."""

    def __init__(self, runtime: Runtime, store: Store, deliveries: Deliveries) -> None:
        self._runtime = runtime
        self._store = store
        self.deliveries = deliveries
        self._tg: TaskGroup | None = None

    async def start(self, tg: TaskGroup) -> None:
        self._tg = tg
        await fail_orphans(self._store, self._runtime.settings)
        await self.deliveries.start(tg)

    async def reconfigure(self, old: Settings, new: Settings) -> None:
        if self._tg is not None:
            await self.deliveries.reconfigure(self._tg, old, new)

    async def stop(self) -> None:
        log.info("stopping: letting deliveries in flight finish")
        await self.deliveries.drain(self._runtime.settings.drain_timeout)


class Evaluation:
    """The scope actors (single machine: every scope's; a cluster node: its
    partitions'), made by `make` in this layer's group. Stopping closes them: each
    finishes its inbox, then returns."""

    def __init__(self, make: Callable[[TaskGroup], Awaitable[Scopes]]) -> None:
        self._make = make
        self.scopes: Scopes | None = None

    async def start(self, tg: TaskGroup) -> None:
        self.scopes = await self._make(tg)

    async def stop(self) -> None:
        if self.scopes is not None:
            self.scopes.close()


class Socket:
    """The Unix socket. Stopping answers the lines in flight (new connections are
    refused meanwhile), within DRAIN_CONNECTIONS_S."""

    def __init__(self, ingress: Ingress, path: str, mode: int) -> None:
        self.ingress = ingress
        self._path = path
        self._mode = mode

    async def start(self, tg: TaskGroup) -> None:
        await tg.start(self.ingress.serve, self._path, self._mode, name="socket")

    async def stop(self) -> None:
        log.info("stopping: answering in-flight lines")
        self.ingress.stop_accepting()
        await self.ingress.drain(DRAIN_CONNECTIONS_S)
