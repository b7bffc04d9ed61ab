"""DeliveryActor: one per integration; rate limit, in-flight limit, attempts and retries."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from typing import Any, NamedTuple, Protocol

import aiohttp
import anyio
from anyio.abc import TaskStatus

from runhook import constants
from runhook.config import SlackIntegration, WebhookIntegration
from runhook.delivery import policy, slack, transport, webhook
from runhook.delivery.ratelimit import TokenBucket
from runhook.delivery.ssrf import DestinationRefused, GuardedResolver, check_url
from runhook.durations import parse_rate
from runhook.settings import Settings
from runhook.store import INSERT_ATTEMPT, UPDATE_EXECUTION, Store, Write
from runhook.templates import TemplateError

log = logging.getLogger("runhook.delivery")


class Job(NamedTuple):
    """An execution waiting for an attempt: all a sender needs, no secrets."""

    id: str
    automation: str
    integration: str
    context: dict[str, Any]
    attempts: int
    created_at: float


class Runtime(Protocol):
    @property
    def settings(self) -> Settings: ...


class DeliveryActor:
    """Feeds one integration. The database is the schedule: fresh executions arrive
    by `offer` (a bounded queue; past it they wait in the database), and scans pick
    up retries that came due and whatever a restart left PENDING."""

    def __init__(self, name: str, runtime: Runtime, store: Store) -> None:
        self.name = name
        self._runtime = runtime
        self._store = store
        self._queue: deque[Job] = deque()
        # Ids queued or in flight; an id leaves only once its attempt's row is
        # committed, so a scan between the attempt and the commit cannot resend it.
        self._known: set[str] = set()
        self._wake = asyncio.Event()
        self._next_scan = 0.0  # start with a scan: resume what a restart left PENDING
        self.in_flight = 0
        self.last_error: str | None = None
        self.sent = 0

    def offer(self, job: Job) -> None:
        if job.id in self._known:
            return
        if len(self._queue) >= constants.DELIVERY_QUEUE_SIZE:
            self._next_scan = 0.0  # it is in the database; read it back when we catch up
        else:
            self._known.add(job.id)
            self._queue.append(job)
        self._wake.set()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        integration = self._runtime.settings.integrations[self.name]
        connector = aiohttp.TCPConnector(
            limit=integration.max_in_flight,
            resolver=None if integration.allow_private else GuardedResolver())
        limiter = anyio.Semaphore(integration.max_in_flight)
        bucket = TokenBucket(parse_rate(integration.rate), now=time.monotonic()) \
            if integration.rate else None
        async with aiohttp.ClientSession(connector=connector) as session, \
                anyio.create_task_group() as tg:
            task_status.started()
            while True:
                if not self._queue and time.time() >= self._next_scan:
                    await self._scan()
                if not self._queue:
                    self._wake.clear()
                    timeout = self._next_scan - time.time()
                    with anyio.move_on_after(min(max(timeout, 0.0), 3600.0)):
                        await self._wake.wait()
                    continue
                await limiter.acquire()
                if bucket is not None:
                    wait = bucket.take(time.monotonic())
                    if wait > 0:
                        await anyio.sleep(wait)
                tg.start_soon(self._attempt, session, self._queue.popleft(), limiter)

    async def _scan(self) -> None:
        now = time.time()
        limit = constants.DELIVERY_SCAN_BATCH + len(self._known)
        rows = await self._store.due(self.name, now, limit)
        for row in rows:
            if row.id not in self._known:
                self._known.add(row.id)
                self._queue.append(Job(row.id, row.automation, self.name, row.context,
                                       row.attempts, row.created_at))
        if len(rows) >= limit:
            self._next_scan = 0.0
        else:
            upcoming = await self._store.next_due_after(self.name, now)
            self._next_scan = upcoming if upcoming is not None else math.inf

    async def _attempt(self, session: aiohttp.ClientSession, job: Job,
                       limiter: anyio.Semaphore) -> None:
        number = job.attempts + 1
        started = time.time()
        self.in_flight += 1
        try:
            response, outcome = await self._send(session, job, number)
        except Exception as exc:  # a bug must fail one execution, not the actor
            log.exception("execution %s: attempt %d crashed", job.id, number)
            response, outcome = None, policy.Outcome("FAILED", reason=f"internal error: {exc!r}")
        finally:
            self.in_flight -= 1
            limiter.release()
        finished = time.time()
        redact = self._runtime.settings.redactor
        reason = redact(outcome.reason) if outcome.reason else None
        due = finished + outcome.delay if outcome.delay is not None else None
        attempt_row = (job.id, number, started, (finished - started) * 1000.0,
                       response.status if response else None, reason,
                       redact(response.body) if response and response.body else None)
        update_row = (outcome.state, reason, finished, due, job.id)
        if outcome.state == "FINISHED":
            self.sent += 1
        else:
            self.last_error = reason
        log.info("execution %s %s: attempt %d %s in %.0f ms%s", job.id, job.automation, number,
                 outcome.state, (finished - started) * 1000.0, f" ({reason})" if reason else "")

        def committed(error: str | None) -> None:
            self._known.discard(job.id)
            if outcome.state == "PENDING" and due is not None:
                self._next_scan = min(self._next_scan, due)
                self._wake.set()

        await self._store.submit(Write([(INSERT_ATTEMPT, [attempt_row]),
                                        (UPDATE_EXECUTION, [update_row])], committed))

    async def _send(self, session: aiohttp.ClientSession, job: Job,
                    number: int) -> tuple[transport.Response | None, policy.Outcome]:
        settings = self._runtime.settings
        integration = settings.integrations.get(self.name)
        automation = settings.automation(job.automation)
        if integration is None or automation is None:
            missing = f"integration {self.name!r}" if integration is None \
                else f"automation {job.automation!r}"
            return None, policy.Outcome("FAILED", reason=f"{missing} is no longer configured")
        action = automation.action
        try:
            if isinstance(integration, WebhookIntegration):
                request = webhook.build(integration, action.payload, job.context,
                                        settings.secrets, job.id, int(time.time()))
            else:
                request = slack.build(integration, action.title, action.text, action.severity,
                                      job.context, settings.secrets)
            check_url(request.url, integration.allow_http, integration.allow_private)
        except DestinationRefused as exc:
            return None, policy.Outcome("FAILED", reason=f"destination refused: {exc}")
        except (TemplateError, KeyError, ValueError) as exc:
            return None, policy.Outcome("FAILED", reason=f"cannot build the request: {exc}")
        response = await transport.post(session, request, integration.timeout)
        status, error = response.status, response.error
        if status is not None and isinstance(integration, SlackIntegration):
            status, error = slack.interpret(status, response.body)
        retry_after = policy.parse_retry_after(response.retry_after, time.time())
        return response, policy.decide(number, status, error, retry_after, response.refused)


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

    def offer(self, job: Job) -> None:
        actor = self.actors.get(job.integration)
        if actor is not None:
            actor.offer(job)
