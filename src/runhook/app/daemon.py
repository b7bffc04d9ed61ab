"""The daemon's lifecycle: start order (database, writer, delivery, scopes, socket, HTTP),
signals, reload, the watchdog, and shutdown in the reverse order."""

from __future__ import annotations

import logging
import signal
import time
from typing import Any

import anyio
from anyio.abc import TaskGroup

from runhook import __version__, systemd
from runhook.app import status as daemon_status
from runhook.app.housekeeping import Housekeeping, fail_orphans
from runhook.config.model import ConfigError
from runhook.config.settings import Settings, load
from runhook.core import constants
from runhook.core.metrics import Metrics
from runhook.core.status import DaemonStatus
from runhook.delivery.actor import Deliveries
from runhook.evaluate.routing import Scopes
from runhook.ingest import commands, silencing
from runhook.ingest.budget import Budget
from runhook.ingest.ingress import Ingress
from runhook.ingest.protocol import Query
from runhook.sources.tracking import Followers
from runhook.store.database import Store, Write, WriteFailed
from runhook.triggers.silences import Silences
from runhook.web import remote as web_remote
from runhook.web import server as web_server
from runhook.web.session import Login

log = logging.getLogger("runhook")

# How long a stopping daemon waits for open connections to be answered (with the
# deliveries' drain, `server.drain_timeout`, inside systemd's 90 s TimeoutStopSec).
DRAIN_CONNECTIONS_S = 10.0


class Daemon:
    """Owns the parts and the order they start and stop in: each task group is
    entered in readiness order and left in reverse, so nothing runs without the
    parts it writes to (the writer outlives delivery, delivery outlives the scopes,
    the scopes outlive the socket). The periodic work is `Housekeeping`'s."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.metrics.attach(self.status)
        self.store = Store(settings.config.server.database)
        self.store.on_batch = self.metrics.batches.observe
        self.deliveries = Deliveries(self, self.store)
        # Loaded from the database at start; shared by every scope's evaluator.
        self.silences = Silences()
        self.scopes: Scopes | None = None
        self.ingress: Ingress | None = None
        self.followers: Followers | None = None  # MLflow tracking servers followed
        self.console_login: Login | None = None  # while the console listens
        self.started_at = time.time()
        self._stop = anyio.Event()
        self._delivery_tg: TaskGroup | None = None
        self._writer_running = False
        self._writer_done = anyio.Event()

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        server = self.settings.config.server
        await self.store.open()
        try:
            self.silences.all = (await silencing.load(self.store, time.time())).all
            async with anyio.create_task_group() as root:
                await root.start(self._run_writer)
                root.start_soon(self._signals, name="signals")
                async with anyio.create_task_group() as delivery_tg:
                    self._delivery_tg = delivery_tg
                    await fail_orphans(self.store, self.settings)
                    await self.deliveries.start(delivery_tg)
                    async with anyio.create_task_group() as scope_tg:
                        self.scopes = Scopes(self, self.store, self.deliveries, scope_tg,
                                             self.silences)
                        await self.scopes.load_seen()
                        self.scopes.start_timed()
                        self.ingress = Ingress(self.scopes, self.store, self._query,
                                               Budget(server.ingest_budget_mib << 20))
                        async with anyio.create_task_group() as front:
                            await front.start(self.ingress.serve, server.socket, server.socket_mode)
                            if server.http:
                                self.console_login = Login(server.socket, server.socket_mode,
                                                           server.http)
                                await front.start(web_server.serve, web_server.make_app(
                                    self, self.store, self.console_login), server.http)
                            if self.settings.remote is not None:
                                # Its address and TLS are read at start; tokens and
                                # sources on every request (a reload rotates them).
                                await front.start(web_remote.serve, web_remote.make_app(
                                    lambda: self.settings, self.ingress,
                                    self.store), self.settings.remote)
                            self.followers = Followers(lambda: self.settings, self.ingress,
                                                       self.store)
                            await front.start(self.followers.run)
                            housekeeping = Housekeeping(self, self.store, self.scopes,
                                                        self.activity)
                            front.start_soon(housekeeping.run, name="housekeeping")
                            interval = systemd.watchdog_interval()
                            if interval is not None:
                                front.start_soon(self._watchdog, interval, name="watchdog")
                            systemd.notify(f"READY=1\nSTATUS={self._summary()}")
                            log.info("runhook %s ready: %s", __version__, self._summary())
                            await self._stop.wait()
                            systemd.notify("STOPPING=1")
                            log.info("stopping: answering in-flight lines")
                            self.ingress.stop_accepting()
                            await self.ingress.drain(DRAIN_CONNECTIONS_S)
                            front.cancel_scope.cancel()
                        self.scopes.close()  # actors finish their inboxes, then return
                    log.info("stopping: letting deliveries in flight finish")
                    await self.deliveries.drain(self.settings.drain_timeout)
                    delivery_tg.cancel_scope.cancel()  # unsent executions stay PENDING
                self.store.finish()  # the writer commits what is queued, then returns
                await self._writer_done.wait()
                root.cancel_scope.cancel()  # the signal handler is all that is left
        finally:
            with anyio.CancelScope(shield=True):
                await self.store.close()
        log.info("stopped")

    async def _run_writer(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        self._writer_running = True
        try:
            await self.store.run(task_status=task_status)
        finally:
            self._writer_running = False
            self._writer_done.set()

    async def _signals(self) -> None:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
            async for signum in signals:
                if signum == signal.SIGHUP:
                    await self.reload()
                else:
                    self.stop()

    async def reload(self) -> list[str]:
        """Re-read the configuration file; a bad file keeps the running one. Returns
        the problems found (empty on success)."""
        systemd.notify(systemd.reloading())
        try:
            new = load(self.settings.source)
        except ConfigError as exc:
            problems = exc.problems
        except Exception as exc:
            # load() turns every bad file into a ConfigError; anything else is a bug
            # in it, and still no reason to take down a daemon that runs fine.
            log.exception("loading %s failed unexpectedly", self.settings.source)
            problems = [f"cannot load {self.settings.source}: {type(exc).__name__}: {exc}"]
        else:
            problems = []
        if problems:
            log.error("reload refused, keeping the running configuration: %s",
                      "; ".join(problems))
            systemd.notify("READY=1\nSTATUS=reload refused; running the previous configuration")
            return problems
        old, self.settings = self.settings, new
        if self.scopes is not None:
            self.scopes.reconfigure(new)
        if self._delivery_tg is not None:
            await self.deliveries.reconfigure(self._delivery_tg, old, new)
        await fail_orphans(self.store, new)
        if self.followers is not None:
            self.followers.reconfigure()
        log.info("configuration reloaded: %s", self._summary())
        systemd.notify(f"READY=1\nSTATUS={self._summary()}")
        return []

    async def _watchdog(self, interval: float) -> None:
        """WATCHDOG=1 only while the loop runs (this task is on it) and the writer
        commits (a heartbeat write must come back within the interval)."""
        while True:
            # A fresh write and wait each round: a heartbeat that commits after its
            # round timed out counts for nothing.
            alive = False
            with anyio.move_on_after(interval):
                try:
                    await self.store.commit(Write([]))
                    alive = True
                except WriteFailed:
                    pass
            if alive:
                systemd.notify("WATCHDOG=1")
            else:
                log.error("watchdog: the database writer made no progress for %.1fs", interval)
            await anyio.sleep(interval)

    async def overview(self) -> commands.Overview:
        return await commands.overview(self)

    async def _query(self, query: Query) -> bytes:
        return await commands.answer(query, self)

    def _summary(self) -> str:
        s = self.settings
        return f"{_count(len(s.automations), 'automation')}, " \
            f"{_count(len(s.integrations), 'integration')}"

    def activity(self) -> dict[str, int]:
        """Counters for the periodic INFO summary."""
        scopes = self.scopes.actors.values() if self.scopes else ()
        events = sum(self.ingress.events_received.values()) if self.ingress else 0
        return {"events": events, "executions": sum(a.executions for a in scopes),
                **self.metrics.totals()}

    async def readiness(self) -> dict[str, bool]:
        """/readyz. After a failed write the database is probed, so readiness returns
        as soon as writes can commit again (room on the disk), not only after some
        client's write happened to succeed."""
        return {
            "database": self._writer_running
            and await self.store.writable(constants.READINESS_PROBE_S,
                                          constants.READINESS_ROOM_BYTES),
            "socket": self.ingress is not None and self.ingress.listening,
            "actors": self.scopes is not None and not self._stop.is_set(),
        }

    def status(self) -> DaemonStatus:
        return daemon_status.status(self.settings, self.started_at, self.store, self.deliveries,
                                    self.scopes, self.ingress, self.followers)


async def main(settings: Settings) -> None:
    await Daemon(settings).run()


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")
