"""Delivery in cluster mode: every node pulls executions from the work queue (one
durable consumer shared by all: each message goes to one node at a time), makes
one attempt, records it on the history stream, and acks it, or has JetStream
deliver it again after the retry delay. A node killed mid-attempt leaves the
message unacked: another node sends it again after `ACK_WAIT_S` (receivers see
the same webhook-id twice, never none); an attempt that takes longer says it is
still in progress every `PROGRESS_S`."""

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
from runhook.config.runtime import Runtime
from runhook.core.durations import parse_rate
from runhook.core.executions import ExecutionRow
from runhook.delivery import attempt, policy
from runhook.delivery.ratelimit import TokenBucket
from runhook.delivery.ssrf import connector

log = logging.getLogger("runhook.cluster.delivery")
CONSUMER = "deliver"
ACK_WAIT_S = 10.0
PROGRESS_S = 3.0
PUBLISH_TIMEOUT_S = 10.0
_LEVELS = {"FINISHED": logging.DEBUG, "PENDING": logging.INFO, "FAILED": logging.WARNING}


class Counts:
    """One integration's deliveries on this node, for `runhook status`."""

    __slots__ = ("in_flight", "last_error", "sent")

    def __init__(self) -> None:
        self.in_flight = 0
        self.sent = 0
        self.last_error: str | None = None


class Workers:
    def __init__(self, runtime: Runtime, bus: Bus) -> None:
        self._runtime = runtime
        self._bus = bus
        self._sessions: dict[str, aiohttp.ClientSession] = {}
        self._session_keys: dict[str, tuple[int, bool]] = {}
        self._buckets: dict[str, tuple[str, TokenBucket]] = {}
        self.in_flight = 0
        self.sent = 0
        self.counts: dict[str, Counts] = {}
        self._freed = asyncio.Event()
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
            asyncio.get_running_loop().create_task(found.close())
        session = self._sessions[name] = aiohttp.ClientSession(
            connector=connector(*key), cookie_jar=aiohttp.DummyCookieJar())
        self._session_keys[name] = key
        return session

    async def _pace(self, name: str) -> None:
        """The integration's `rate`, per node (each node keeps its own bucket)."""
        rate = self._runtime.settings.integrations[name].rate
        if not rate:
            return
        bucket = self._buckets.get(name)
        if bucket is None or bucket[0] != rate:
            bucket = self._buckets[name] = (rate, TokenBucket(parse_rate(rate),
                                                              now=time.monotonic()))
        wait = bucket[1].take(time.monotonic())
        if wait > 0:
            await anyio.sleep(wait)

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
        number = msg.metadata.num_delivered
        settings = self._runtime.settings
        started = time.time()
        if integration not in settings.integrations:
            response, outcome = None, policy.Outcome(
                "FAILED", reason=f"integration {integration!r} is no longer configured",
                config_error=True)
        else:
            await self._pace(integration)
            counts = self.counts.setdefault(integration, Counts())
            counts.in_flight += 1
            try:
                response, outcome = await attempt.send(
                    self._session(integration), settings, integration, automation, context,
                    execution_id, number)
            except Exception as exc:
                log.exception("execution %s: attempt %d crashed", execution_id, number)
                response, outcome = None, policy.Outcome("FAILED",
                                                         reason=f"internal error: {exc!r}")
            finally:
                counts.in_flight -= 1
        finished = time.time()
        reason = settings.redactor(outcome.reason) if outcome.reason else None
        if integration in self.counts:
            counts = self.counts[integration]
            if outcome.state == "FINISHED":
                counts.sent += 1
                counts.last_error = None
            elif not outcome.config_error:
                counts.last_error = reason
        due = finished + outcome.delay if outcome.delay is not None else None
        state = "FAILED" if outcome.disable else outcome.state
        record = ["attempt",
                  [execution_id, number, started, (finished - started) * 1000.0,
                   response.status if response else None, reason,
                   response.body or None if response else None],
                  [state, reason, finished, due, number, execution_id],
                  row]  # the execution itself: a mirror that missed it inserts it first
        # publish_async: the shared reply inbox (js.publish makes one per request, and
        # costs a third more CPU a delivery); the ack is still awaited before the
        # message is, so a recorded attempt is never lost.
        recorded = await self._bus.js.publish_async(
            HISTORY_SUBJECT, encode(record), headers={MSG_ID: f"{execution_id}#{number}"})
        async with asyncio.timeout(PUBLISH_TIMEOUT_S):
            await recorded
        self._runtime.metrics.delivered(integration, automation, state, finished - started,
                                        response is not None)
        log.log(_LEVELS[state], "execution %s %s: attempt %d %s in %.0f ms, %.1fs after "
                "creation%s", execution_id, automation, number, state,
                (finished - started) * 1000.0, finished - created_at,
                f" ({reason})" if reason else "")
        if state == "PENDING":
            await msg.nak(delay=outcome.delay)
        else:
            if state == "FINISHED":
                self.sent += 1
            await msg.ack()

