"""Delivery in cluster mode: every node pulls executions from the work queue (one
durable consumer shared by all: each message goes to one node at a time), makes
one attempt, records it on the history stream, and acks it, or has JetStream
deliver it again after the retry delay. A node killed mid-attempt leaves the
message unacked: another node sends it again after `ACK_WAIT_S` (receivers see
the same webhook-id twice, never none); an attempt that takes longer says it is
still in progress every `PROGRESS_S`. The attempt itself is delivery/core.py's, as on
one machine; a 410 disables the integration on every node (cluster/shared.py), and
its executions then wait, held, until `runhook enable`."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import aiohttp
import anyio
import msgspec
from nats.js.api import AckPolicy, ConsumerConfig

from runhook.cluster.bus import (
    EXECUTION_SUBJECT,
    EXECUTIONS,
    HISTORY_SUBJECT,
    MSG_ID,
    Bus,
    decode,
    encode,
    take,
)
from runhook.cluster.shared import Shared, counted
from runhook.config.runtime import Runtime
from runhook.core.executions import ExecutionRow, Job
from runhook.delivery import policy
from runhook.delivery.core import Attempted, Counts
from runhook.delivery.ssrf import connector

log = logging.getLogger("runhook.cluster.delivery")
CONSUMER = "deliver"
ACK_WAIT_S = 10.0
PROGRESS_S = 3.0
PUBLISH_TIMEOUT_S = 10.0

__all__ = ["Counts", "Workers"]


class Workers:
    def __init__(self, runtime: Runtime, bus: Bus, shared: Shared) -> None:
        self._runtime = runtime
        self._bus = bus
        self._shared = shared
        self._sessions: dict[str, aiohttp.ClientSession] = {}
        self._session_keys: dict[str, tuple[int, bool]] = {}
        self.in_flight = 0
        self.sent = 0
        self.counts: dict[str, Counts] = {}
        self._freed = asyncio.Event()
        self._tg: anyio.abc.TaskGroup | None = None  # the attempts', and closing sessions'
        # id(message) -> (the message, when its attempt started); a Msg is not hashable
        self._attempting: dict[int, tuple[Any, float]] = {}

    async def run(self) -> None:
        js = self._bus.js
        subscription = await self._bus.subscribe("subscribing to the executions", lambda:
            js.pull_subscribe(EXECUTION_SUBJECT, durable=CONSUMER, stream=EXECUTIONS,
                              config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT,
                                                    ack_wait=ACK_WAIT_S, max_ack_pending=-1)))
        slots = self._bus.settings.delivery_workers
        free = anyio.Semaphore(slots)
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                tg.start_soon(self._in_progress)
                while True:
                    # A fetch for half the slots or more (one per free slot would cost
                    # a round trip per execution once the first batch is in flight).
                    while free.value < max(1, slots // 2):
                        self._freed.clear()
                        await self._freed.wait()
                    room = free.value
                    try:
                        messages = await take(subscription, room, 1.0)
                    except Exception as exc:  # noqa: BLE001 - NATS away: wait, then again
                        log.warning("cluster: fetching executions: %s", exc)
                        await anyio.sleep(1.0)
                        continue
                    for msg in messages or ():
                        await free.acquire()
                        tg.start_soon(self._one, msg, free)
        finally:
            with anyio.CancelScope(shield=True):
                for session in self._sessions.values():
                    await session.close()

    def _session(self, name: str) -> aiohttp.ClientSession:
        """One session per integration as configured now: a reload that changes its
        SSRF guard or its connection limit gets a new one (the old one is closed)."""
        integration = self._runtime.settings.integrations[name]
        key = (integration.max_in_flight, integration.allow_private)
        found = self._sessions.get(name)
        if found is not None and self._session_keys.get(name) == key:
            return found
        if found is not None:
            assert self._tg is not None
            self._tg.start_soon(_close, found, name=f"closing {name}'s old session")
        session = self._sessions[name] = aiohttp.ClientSession(
            connector=connector(*key), cookie_jar=aiohttp.DummyCookieJar())
        self._session_keys[name] = key
        return session

    async def _one(self, msg: Any, free: anyio.Semaphore) -> None:
        self.in_flight += 1
        self._attempting[id(msg)] = (msg, time.monotonic())
        try:
            await self._attempt(msg)
        except Exception:
            log.exception("cluster: an attempt crashed")
        finally:
            self._attempting.pop(id(msg), None)
            self.in_flight -= 1
            free.release()
            self._freed.set()

    async def _in_progress(self) -> None:
        """Every PROGRESS_S, each attempt running longer than that tells JetStream it is
        still in progress, so a slow receiver is not sent a second copy meanwhile (one
        task for all, not one per attempt)."""
        while True:
            await anyio.sleep(PROGRESS_S)
            due = time.monotonic() - PROGRESS_S
            for msg, started in list(self._attempting.values()):
                if started <= due:
                    try:
                        await msg.in_progress()
                    except Exception as exc:  # noqa: BLE001 - the next round tries again
                        log.debug("cluster: in progress: %s", exc)

    async def _attempt(self, msg: Any) -> None:
        try:
            row = decode(msg.data, ExecutionRow)
            execution_id, automation, integration, context, created_at = \
                str(row.id), str(row.automation), str(row.integration), \
                dict(json.loads(row.context)), float(row.created_at)
        except (ValueError, TypeError, IndexError, msgspec.DecodeError) as exc:
            # Not one of ours: no execution to record it under, and never deliverable.
            log.error("cluster: an executions message is not an execution: %s", exc)
            await msg.term()
            return
        # The attempt number is the delivery's: a copy abandoned by a node killed
        # mid-attempt counts as an attempt.
        attempts, round_start = counted(msg)
        job = Job(execution_id, automation, integration, context, attempts, created_at,
                  round_start)
        settings = self._runtime.settings
        if integration not in settings.integrations:
            done = Counts().judged(self._runtime, job, job.attempts + 1, time.time(), None,
                                   policy.Outcome("FAILED", reason=f"integration "
                                                  f"{integration!r} is no longer configured",
                                                  config_error=True))
        else:
            counts = self.counts.setdefault(integration, Counts())
            if await self._held(msg, job, counts, settings.integrations[integration].rate):
                return
            counts.in_flight += 1
            try:
                done = await counts.attempt(self._session(integration), self._runtime, job)
            finally:
                counts.in_flight -= 1
            if done.disabled is not None:
                await self._shared.disable(integration, done.disabled)
        await self._record(done, row)
        if done.state == "PENDING":
            await msg.nak(delay=done.outcome.delay)
        else:
            await msg.ack()

    async def _held(self, msg: Any, job: Job, counts: Counts, rate: str | None) -> bool:
        """Paced to the integration's `rate` (per node: each node keeps its own
        bucket); True when the integration is disabled (on any node's 410), the
        message held until enabled, unsent."""
        disabled = self._shared.disabled
        if job.integration not in disabled:
            wait = counts.pace(rate)
            if wait > 0:
                await anyio.sleep(wait)
        if job.integration in disabled:
            await self._shared.hold(msg, job)
            return True
        return False

    async def _record(self, done: Attempted, row: ExecutionRow) -> None:
        """The attempt onto the history stream, which every node's mirror applies."""
        job = done.job
        record = ["attempt", done.attempt_row(),
                  [done.state, done.reason, done.finished, done.due, done.number, job.id],
                  row]  # the execution itself: a mirror that missed it inserts it first
        # publish_async: the shared reply inbox (js.publish makes one per request, and
        # costs a third more CPU a delivery); the ack is still awaited before the
        # message is, so a recorded attempt is never lost.
        recorded = await self._bus.js.publish_async(
            HISTORY_SUBJECT, encode(record), headers={MSG_ID: f"{job.id}#{done.number}"})
        async with asyncio.timeout(PUBLISH_TIMEOUT_S):
            await recorded
        if done.state == "FINISHED":
            self.sent += 1


async def _close(session: aiohttp.ClientSession) -> None:
    with anyio.CancelScope(shield=True):  # a shutdown must not leave it half closed
        await session.close()
