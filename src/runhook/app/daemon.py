"""The single-machine daemon: its parts (the writer, delivery, the scope actors, the
ways in) composed into the one lifecycle, and signals, reload and the watchdog."""

from __future__ import annotations

import functools
import logging
import signal
import time
from collections.abc import Callable, Sequence
from typing import Any

import anyio

from runhook import __version__, systemd
from runhook.app import lifecycle
from runhook.app import status as daemon_status
from runhook.app.housekeeping import Housekeeping, fail_orphans
from runhook.app.lifecycle import Layer, Part, Task
from runhook.app.parts import Delivery, Evaluation, Socket, Writer
from runhook.config.model import ConfigError
from runhook.config.restart import needs_restart, restart_note
from runhook.config.settings import Settings, load
from runhook.core import constants
from runhook.core.metrics import Metrics
from runhook.core.status import DaemonStatus
from runhook.delivery.actor import Deliveries
from runhook.evaluate.routing import Router, Scopes
from runhook.ingest import commands, silencing
from runhook.ingest.budget import Budget
from runhook.ingest.commands import SharedCommands
from runhook.ingest.ingress import Ingress
from runhook.ingest.protocol import Query
from runhook.sources.tracking import Followers
from runhook.store.database import Store, Write, WriteFailed
from runhook.triggers.silences import Silences
from runhook.web import remote as web_remote
from runhook.web import server as web_server
from runhook.web.session import Login

log = logging.getLogger("runhook")


class Daemon:
    """Owns the parts and composes them into layers (app/lifecycle.py): each layer
    is entered in readiness order and left in reverse, so nothing runs without the
    parts it writes to (the writer outlives delivery, delivery outlives the scopes,
    the scopes outlive the socket). A cluster node (app/cluster.py) runs the same
    lifecycle with its own parts in the middle layers."""

    def __init__(self, settings: Settings, store: Store | None = None) -> None:
        self.settings = settings
        # What the daemon bound and opened: a reload that changes it applies the rest
        # and says what waits for a restart.
        self.started_with = settings.config
        self.awaiting_restart: list[str] = []
        self.metrics = Metrics()
        self.metrics.attach(self.status)
        self.store = store if store is not None else Store(settings.config.server.database)
        self.store.on_batch = self.metrics.batches.observe
        self.deliveries = Deliveries(self, self.store)
        self.writer = Writer(self.store)
        self.delivery: Delivery | None = None  # a cluster node delivers through its workers
        # Loaded from the database at start; shared by every scope's evaluator.
        self.silences = Silences()
        # The commands that change state, when a cluster holds it (app/cluster.py).
        self.shared_commands: SharedCommands | None = None
        self.scopes: Scopes | None = None
        self.ingress: Ingress | None = None
        self.followers: Followers | None = None  # MLflow tracking servers followed
        self.console_login: Login | None = None  # while the console listens
        self.started_at = time.time()
        self.ready_line = ""  # said after "ready" in the log: what kind of node this is
        self._stop = anyio.Event()

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        """Open the database (and what `connect` connects), run the layers until told
        to stop, close in reverse."""
        await self.store.open()
        try:
            await self.connect()
            self.silences.all = (await silencing.load(self.store, time.time())).all
            await lifecycle.run(self.layers(), self._serve)
        finally:
            with anyio.CancelScope(shield=True):
                await self.disconnect()
                await self.store.close()
        log.info("stopped")

    async def connect(self) -> None:
        """What must be reached before the parts start: nothing on one machine."""

    async def disconnect(self) -> None:
        """Undo `connect`, once the parts have stopped (or it failed)."""

    def layers(self) -> list[Layer]:
        """One machine: the writer, delivery, every scope's actor, the ways in (with
        the MLflow followers and the watchdog)."""
        delivery = self.delivery = Delivery(self, self.store, self.deliveries)
        evaluation = Evaluation(self._scopes)
        budget = Budget(self.settings.config.server.ingest_budget_mib << 20)
        return [self.root, lambda: [delivery], lambda: [evaluation],
                lambda: self.front(self._scopes_made(), budget, self._followed)]

    def root(self) -> list[Part]:
        """The bottom layer: the writer, and the signals (heard until the very end)."""
        return [self.writer, Task("signals", self._signals)]

    def front(self, router: Router[Any], budget: Budget | None,
              extra: Callable[[Ingress], Sequence[Part]]) -> list[Part]:
        """The top layer: the socket, the console, the remote listener, `extra` (given
        the ingress), and housekeeping. `router` is where admitted events go."""
        server = self.settings.config.server
        ingress = self.ingress = Ingress(router, self.store, self._query, budget)
        parts: list[Part] = [Socket(ingress, server.socket, server.socket_mode)]
        if server.http:
            self.console_login = Login(server.socket, server.socket_mode, server.http)
            parts.append(Task("console", web_server.serve, web_server.make_app(
                self, self.store, self.console_login), server.http, ready=True))
        if self.settings.remote is not None:
            # Its address and TLS are read at start; tokens and sources on every
            # request (a reload rotates them).
            parts.append(Task("remote listener", web_remote.serve, web_remote.make_app(
                lambda: self.settings, ingress, self.store),
                self.settings.remote, ready=True))
        parts.extend(extra(ingress))
        housekeeping = Housekeeping(self, self.store, self._scopes_made(), self.activity)
        parts.append(Task("housekeeping", housekeeping.run))
        return parts

    def _scopes_made(self) -> Scopes:
        assert self.scopes is not None, "the scope actors' layer is below the ways in"
        return self.scopes

    async def _scopes(self, tg: anyio.abc.TaskGroup) -> Scopes:
        scopes = self.scopes = Scopes(self, self.store, self.deliveries, tg, self.silences)
        await scopes.load_seen()
        scopes.start_timed()
        return scopes

    def _followed(self, ingress: Ingress) -> list[Part]:
        self.followers = Followers(lambda: self.settings, ingress, self.store)
        parts: list[Part] = [Task("followers", self.followers.run, ready=True)]
        interval = systemd.watchdog_interval()
        if interval is not None:
            parts.append(Task("watchdog", functools.partial(self._watchdog, interval)))
        return parts

    async def _serve(self) -> None:
        """Inside every layer: say ready, wait to be told to stop, say stopping."""
        systemd.notify(f"READY=1\nSTATUS={self._summary()}")
        log.info("runhook %s ready%s: %s", __version__, self.ready_line, self._summary())
        await self._stop.wait()
        systemd.notify("STOPPING=1")

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
        self.awaiting_restart = needs_restart(self.started_with, new.config)
        if self.scopes is not None:
            self.scopes.reconfigure(new)
        if self.delivery is not None:
            await self.delivery.reconfigure(old, new)
        await fail_orphans(self.store, new)
        if self.followers is not None:
            self.followers.reconfigure()
        if self.awaiting_restart:
            log.warning("configuration reloaded: %s%s", self._summary(),
                        restart_note(self.awaiting_restart))
        else:
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
            "database": self.writer.running
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
