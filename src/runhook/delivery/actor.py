"""DeliveryActor: one per integration on one machine, the attempt core (core.py) with
the database as its schedule; in-flight limit, retries, `runhook test`.
Deliveries: the actors by integration name."""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from typing import Any

import aiohttp
import anyio
from anyio.abc import TaskStatus

from runhook.config.runtime import Runtime
from runhook.config.settings import Settings
from runhook.core import constants
from runhook.core.executions import Job
from runhook.core.flag import Flag
from runhook.delivery import attempt
from runhook.delivery.core import Attempted, Counts
from runhook.delivery.ssrf import connector
from runhook.store.database import Statement, Store, Write
from runhook.store.statements import (
    DISABLE_INTEGRATION,
    INSERT_ATTEMPT,
    INSERT_EXECUTION,
    UPDATE_EXECUTION,
)

log = logging.getLogger("runhook.delivery")
# After a failed read of the due executions, the next try.
SCAN_RETRY_S = 1.0


class DeliveryActor(Counts):
    """Feeds one integration. The database is the schedule: fresh executions arrive
    by `offer` (a bounded queue; past it they wait in the database), and scans pick
    up retries that came due and whatever a restart left PENDING."""

    def __init__(self, name: str, runtime: Runtime, store: Store) -> None:
        super().__init__()
        self.name = name
        self._runtime = runtime
        self._store = store
        self._queue: deque[Job] = deque()
        # Ids queued or in flight; an id leaves only once its attempt's row is
        # committed, so a scan between the attempt and the commit cannot resend it.
        self._known: set[str] = set()
        # Flags, not anyio Events: the loop and the senders clear these and set
        # them again all day, and an anyio.Event, once set, stays set.
        self._wake = Flag()  # for the loop: scan, or hand out work
        self._ready = Flag()  # for the senders: the queue has jobs
        self._next_scan = 0.0  # start with a scan: resume what a restart left PENDING
        # While a scan reads: ids whose attempt committed (its snapshot may predate
        # that commit and still show them PENDING), and the earliest time anyone
        # asked for a scan (the scan's own answer must not overwrite it).
        self._settled_during_scan: set[str] | None = None
        self._asked_during_scan = math.inf
        self._idle = Flag(is_set=True)
        self._stopping = False
        self._scope = anyio.CancelScope()
        self._session: aiohttp.ClientSession | None = None

    def offer(self, job: Job) -> None:
        if job.id in self._known:
            return
        if len(self._queue) >= constants.DELIVERY_QUEUE_SIZE or self.disabled:
            self._scan_by(0.0)  # it is in the database; read it back when we catch up
        else:
            self._known.add(job.id)
            self._queue.append(job)
            self._ready.set()
        self._wake.set()

    def enable(self) -> None:
        self.disabled = None
        self._scan_by(0.0)  # what waited while disabled is in the database
        self._wake.set()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        with self._scope:
            await self._run(task_status)

    def cancel(self) -> None:
        """Stop now; attempts in flight are abandoned and stay PENDING."""
        self._scope.cancel()

    async def drain(self, timeout: float) -> None:
        """Start no new attempt; wait up to `timeout` for those in flight."""
        self._stopping = True
        self._wake.set()
        with anyio.move_on_after(timeout):
            await self._idle.wait()

    @property
    def queued(self) -> int:
        return len(self._queue)

    async def _run(self, task_status: TaskStatus[None]) -> None:
        integration = self._runtime.settings.integrations[self.name]
        self.disabled = (await self._store.disabled_integrations()).get(self.name)
        # No cookie jar: an endpoint's Set-Cookie must not ride along on later
        # deliveries (of other automations, to the same host).
        session = self._session = aiohttp.ClientSession(
            connector=connector(integration.max_in_flight, integration.allow_private),
            cookie_jar=aiohttp.DummyCookieJar())
        try:
            # One sender per in-flight slot, each taking jobs from the queue: no
            # task or semaphore per attempt (measured: 5 us less per delivery).
            # The loop never returns: cancelling the actor (self._scope, or the
            # daemon's delivery group after the drain) cancels the senders with it,
            # and an attempt abandoned in flight stays PENDING in the database.
            async with anyio.create_task_group() as senders:
                for slot in range(integration.max_in_flight):
                    senders.start_soon(self._sender, session, integration.rate,
                                       name=f"delivery {self.name} sender {slot}")
                task_status.started()
                await self._loop()
        finally:
            # We are being cancelled: closing the connections must still happen (an
            # actor a reload restarted would leave them open until exit).
            with anyio.CancelScope(shield=True):
                await session.close()

    async def _loop(self) -> None:
        """Keeps the queue filled from the database and wakes the senders."""
        while True:
            if self._stopping:
                await anyio.sleep_forever()  # drained by the daemon, then cancelled
            if self.disabled:
                for job in self._queue:  # they stay PENDING in the database
                    self._known.discard(job.id)
                self._queue.clear()
                self._wake.clear()
                await self._wake.wait()
                continue
            if not self._queue and time.time() >= self._next_scan:
                await self._scan()
            if self._queue:
                self._ready.set()
            self._wake.clear()  # a sender finding the queue empty, an offer or a retry wakes us
            timeout = math.inf if self._queue else self._next_scan - time.time()
            with anyio.move_on_after(min(max(timeout, 0.0), 3600.0)):
                await self._wake.wait()

    async def _sender(self, session: aiohttp.ClientSession, rate: str | None) -> None:
        while True:
            if not self._queue or self.disabled or self._stopping:
                self._ready.clear()
                self._wake.set()  # the loop may have a scan to do
                await self._ready.wait()
                continue
            job = self._queue.popleft()
            wait = self.pace(rate)
            if wait > 0:
                await anyio.sleep(wait)
                if self.disabled or self._stopping:
                    self._known.discard(job.id)  # still PENDING in the database
                    continue
            self.in_flight += 1
            self._idle.clear()
            try:
                await self._attempt(session, job)
            except Exception:  # a bug must cost one attempt, not one of the senders
                log.exception("integration %s: execution %s: the attempt failed unrecorded",
                              self.name, job.id)
                self._known.discard(job.id)  # still PENDING: a scan sends it again

    def _scan_by(self, when: float) -> None:
        """Ask for a scan no later than `when`."""
        self._next_scan = min(self._next_scan, when)
        self._asked_during_scan = min(self._asked_during_scan, when)

    async def _scan(self) -> None:
        now = time.time()
        limit = constants.DELIVERY_SCAN_BATCH + len(self._known)
        settled = self._settled_during_scan = set()
        self._asked_during_scan = math.inf
        try:
            rows, found = await self._store.due(self.name, now, limit, self._known)
            self._settled_during_scan = None
            for row in rows:
                if row.id not in self._known and row.id not in settled:
                    self._known.add(row.id)
                    self._queue.append(Job(row.id, row.automation, self.name, row.context,
                                           row.attempts, row.created_at, row.round_start))
            upcoming = 0.0 if found >= limit else \
                await self._store.next_due_after(self.name, now)
            # A retry committed while we read may be earlier than what we saw.
            self._next_scan = min(math.inf if upcoming is None else upcoming,
                                  self._asked_during_scan)
        except Exception:  # the reader failed: say so and try again shortly
            log.exception("integration %s: reading due executions failed", self.name)
            self._next_scan = time.time() + SCAN_RETRY_S
        finally:
            self._settled_during_scan = None

    async def _attempt(self, session: aiohttp.ClientSession, job: Job) -> None:
        try:
            await self._record(await self.attempt(session, self._runtime, job))
        finally:
            # Counted until the attempt's write is queued: a drain waiting for zero
            # knows every finished attempt will be committed.
            self.in_flight -= 1
            if self.in_flight == 0:
                self._idle.set()

    async def _record(self, done: Attempted) -> None:
        """The attempt into the database; the scan is the schedule of what follows."""
        job = done.job
        statements: list[Statement] = [
            (INSERT_ATTEMPT, [done.attempt_row()]),
            (UPDATE_EXECUTION, [(done.state, done.reason, done.finished, done.due, job.id)])]
        if done.disabled is not None:
            statements.append((DISABLE_INTEGRATION, [(self.name, done.finished, done.disabled)]))
        due = done.due if done.state == "PENDING" else None

        def committed(error: str | None) -> None:
            self._known.discard(job.id)
            if self._settled_during_scan is not None:
                self._settled_during_scan.add(job.id)
            if due is not None:
                self._scan_by(due)
                self._wake.set()

        # Once the endpoint answered, its answer is recorded even if the drain timed
        # out meanwhile, or the next start would send it again. Queuing the write
        # without waiting offers no moment to be cancelled at; only a wait for a
        # writer that is behind needs the shield (3.5 us, 3 % of a delivery, if
        # paid on every attempt).
        write = Write(statements, committed)
        try:
            self._store.submit_nowait(write)
        except anyio.WouldBlock:
            with anyio.CancelScope(shield=True):
                await self._store.submit(write)

    def poke(self) -> None:
        """Look in the database now: redelivered executions are due."""
        self._scan_by(0.0)
        self._wake.set()

    async def test(self, payload: str | None) -> dict[str, Any]:
        """One request outside any automation, recorded as a test execution; the
        answer says what the endpoint said. Never retried."""
        assert self._session is not None
        probed = await attempt.probe(self._session, self._runtime.settings, self.name, payload)
        if probed.row is not None:
            execution_id = probed.row.id
            await self._store.commit(Write([
                (INSERT_EXECUTION, [probed.row]), (INSERT_ATTEMPT, [probed.attempt]),
                (UPDATE_EXECUTION, [(probed.state, probed.reason, probed.finished, None,
                                     execution_id)]),
            ], barrier=True))  # the update must follow its insert
        return probed.answer


class Deliveries:
    """The delivery actors by integration name."""

    def __init__(self, runtime: Runtime, store: Store) -> None:
        self._runtime = runtime
        self._store = store
        self.actors: dict[str, DeliveryActor] = {}

    async def start(self, tg: anyio.abc.TaskGroup) -> None:
        for name in self._runtime.settings.integrations:
            await self.add(tg, name)

    async def add(self, tg: anyio.abc.TaskGroup, name: str) -> None:
        actor = DeliveryActor(name, self._runtime, self._store)
        self.actors[name] = actor
        await tg.start(actor.run)

    async def reconfigure(self, tg: anyio.abc.TaskGroup, old: Settings, new: Settings) -> None:
        """Start actors for new integrations and restart those whose definition
        changed (their limits and connection settings are fixed at start)."""
        for name, integration in new.integrations.items():
            actor = self.actors.get(name)
            if actor is not None and old.integrations.get(name) == integration:
                continue
            if actor is not None:
                await actor.drain(5.0)
                actor.cancel()
            await self.add(tg, name)
        for name in set(self.actors) - set(new.integrations):
            self.actors.pop(name).cancel()  # its PENDING executions fail at next start

    async def drain(self, timeout: float) -> None:
        async with anyio.create_task_group() as tg:
            for actor in self.actors.values():
                tg.start_soon(actor.drain, timeout)

    def offer(self, job: Job) -> None:
        actor = self.actors.get(job.integration)
        if actor is not None:
            actor.offer(job)
