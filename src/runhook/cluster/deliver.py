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
import math
import time
from typing import Any

import aiohttp
import anyio
import msgspec
from nats.js.api import AckPolicy, ConsumerConfig

from runhook.cluster.attempts import Recorder
from runhook.cluster.bus import (
    ATTEMPTS,
    EXECUTION_SUBJECT,
    EXECUTIONS,
    MSG_ID,
    ROUND,
    Bus,
    decode,
    take,
)
from runhook.cluster.mirror import Mirror
from runhook.cluster.rates import Share
from runhook.cluster.settled import FINAL, settled
from runhook.cluster.shared import Shared
from runhook.config.runtime import Runtime
from runhook.config.settings import Settings
from runhook.core.executions import TEST_AUTOMATION, ExecutionRow, Job
from runhook.delivery import policy
from runhook.delivery.core import Attempted, Counts
from runhook.delivery.ssrf import connector

log = logging.getLogger("runhook.cluster.delivery")
CONSUMER = "deliver"
ACK_WAIT_S = 10.0
PROGRESS_S = 3.0
PUBLISH_TIMEOUT_S = 5.0  # one try of a publish
PUBLISH_RETRY_S = 0.5
ACK_TIMEOUT_S = 2.0
# How long an attempt's record (and a retry's copy, and the ack) is tried before it is
# given up (counted in status as `unrecorded`); the message is kept in progress meanwhile.
RECORD_WAIT_S = 120.0
MIN_WAIT_S = 0.05
# What a retry's copy carries besides the attempts made and its round (bus.ATTEMPTS,
# bus.ROUND): when the next is due (wall clock, and the delay itself, which bounds
# the wait).
DUE = "Runhook-Due"
DELAY = "Runhook-Delay"
# An execution whose automation or integration this node's file lacks was made by an
# owner with another file (a rolling change: one node reloaded before the others).
# This node does not judge it: it goes back to the queue, for a node that has both (or
# this one, reloaded) to send; the wait grows by UNKNOWN_WAIT_S a delivery up to
# UNKNOWN_WAIT_MAX_S. Only at its UNKNOWN_TRIES-th delivery (about 6 minutes on) is it
# FAILED as no longer configured, as one machine fails it at a reload that removes it.
UNKNOWN_WAIT_S = 1.0
UNKNOWN_WAIT_MAX_S = 10.0
UNKNOWN_TRIES = 40
RECHECK_S = 5.0  # a copy sent again while this node's history is behind: back after this

__all__ = ["Counts", "Workers"]


class Workers:
    def __init__(self, runtime: Runtime, bus: Bus, shared: Shared) -> None:
        self._runtime = runtime
        self._bus = bus
        self._shared = shared
        self.share = Share(bus.settings.lease)
        self._sessions: dict[str, aiohttp.ClientSession] = {}
        self._session_keys: dict[str, tuple[int, bool]] = {}
        self.in_flight = 0
        self.sent = 0
        self.unrecorded = 0  # attempts made whose history record JetStream never took
        self.counts: dict[str, Counts] = {}
        self._freed = asyncio.Event()
        self._tg: anyio.abc.TaskGroup | None = None  # the attempts', and closing sessions'
        # id(message) -> (the message, when its attempt started); a Msg is not hashable
        self._attempting: dict[int, tuple[Any, float]] = {}
        self.recorder = Recorder(bus, RECORD_WAIT_S)  # attempt records, batched
        # Set by the node: a copy JetStream sends again is checked against its history.
        self.mirror: Mirror | None = None
        self.settled_before = 0  # such copies found settled: acknowledged, not sent

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
                tg.start_soon(self.recorder.run)
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
        made, round_start, wait = _carried(msg.headers)
        if wait > 0:  # a retry's copy, early: back until its delay is over, unsent
            await msg.nak(delay=wait)
            return
        # The attempt number counts attempts made (carried by the copy a retry puts
        # back), not JetStream's deliveries: a copy a node took and never sent (killed
        # first, or the integration disabled there) comes back as it was.
        job = Job(execution_id, automation, integration, context, made, created_at,
                  round_start)
        if await self._sent_before(msg, job):
            return
        settings = self._runtime.settings
        if await self._unknown(msg, job, settings):
            return
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
        if done.state == "FINISHED":
            self.sent += 1
        # Sent (or judged): from here a failure of the bookkeeping must not send it
        # again. The record is retried on its own, and the message is acknowledged
        # whether or not the record made it (an unrecorded attempt is counted, logged).
        recorded = await self._record(done, row)
        if done.state == "PENDING" and not await self._retry(msg, done):
            await msg.nak(delay=done.outcome.delay)  # the copy failed: JetStream's redelivery
            return
        # A final state recorded proves the attempt: an acknowledgement lost is found
        # out when the copy comes back (_sent_before), so it is not waited for. Else
        # (a retry's copy put back, the record not taken) it is confirmed.
        await self._settled(msg, job.id, confirm=not (recorded and done.state in FINAL))

    async def _sent_before(self, msg: Any, job: Job) -> bool:
        """A copy JetStream sent again (its acknowledgement lost, or its node gone):
        True if it was settled already (acknowledged now, unsent) or must wait for
        this node's history to catch up (put back for RECHECK_S, unsent)."""
        if self.mirror is None or msg.metadata.num_delivered <= 1:
            return False
        known = await settled(self._bus, self.mirror, job)
        if known is None:
            await msg.nak(delay=RECHECK_S)
            return True
        if known:
            self.settled_before += 1
            log.info("cluster: execution %r came back after its attempt %d was recorded; "
                     "acknowledged, not sent again", job.id, job.attempts + 1)
            await self._settled(msg, job.id, confirm=True)
        return known

    async def _unknown(self, msg: Any, job: Job, settings: Settings) -> bool:
        """True when this node's file lacks the execution's automation or integration
        and the message went back to the queue, unsent and unjudged."""
        test = job.automation == TEST_AUTOMATION  # `runhook test`'s: no automation
        if job.integration in settings.integrations and (
                test or settings.automation(job.automation) is not None):
            return False
        delivered = int(msg.metadata.num_delivered or 1)
        if delivered >= UNKNOWN_TRIES:
            return False  # judged: FAILED, no longer configured
        log.info("cluster: execution %r: automation %r or integration %r is not in this "
                 "node's configuration (delivery %d); back on the queue for a node that has "
                 "them", job.id, job.automation, job.integration, delivered)
        await msg.nak(delay=min(UNKNOWN_WAIT_MAX_S, UNKNOWN_WAIT_S * delivered))
        return True

    async def _held(self, msg: Any, job: Job, counts: Counts, rate: str | None) -> bool:
        """Paced to this node's share of the integration's `rate` (cluster/rates.py:
        each node keeps its own bucket); True when the integration is disabled (on
        any node's 410), the message held until enabled, unsent."""
        disabled = self._shared.disabled
        if rate and job.integration not in disabled:
            wait = counts.pace(rate, await self.share.now())
            if wait > 0:
                await anyio.sleep(wait)
        if job.integration in disabled:
            await self._shared.hold(msg, job)
            return True
        return False

    async def _record(self, done: Attempted, row: ExecutionRow) -> bool:
        """The attempt onto the history stream, which every node's mirror applies,
        in one message with the other attempts finished meanwhile (attempts.py);
        tried again until JetStream acknowledges it (a server lost, its stream's
        leader elected again) for up to RECORD_WAIT_S."""
        job = done.job
        record = ["attempt", done.attempt_row(),
                  [done.state, done.reason, done.finished, done.due, done.number, job.id],
                  row]  # the execution itself: a mirror that missed it inserts it first
        if await self.recorder.record(record):
            return True
        self.unrecorded += 1
        log.error("cluster: attempt %d of execution %r (%s) was made but JetStream did "
                  "not take its record in %.0fs; it is not sent again for that, and the "
                  "history shows the attempts before it", done.number, job.id, done.state,
                  RECORD_WAIT_S)
        return False

    async def _retry(self, msg: Any, done: Attempted) -> bool:
        """A retry is a copy of the execution put back on the work queue, carrying the
        attempts made and when the next is due; the copy this attempt was made from
        is then acknowledged. False if JetStream did not take the copy."""
        delay = float(done.outcome.delay or 0.0)
        return await self._publish(EXECUTION_SUBJECT, msg.data, {
            MSG_ID: f"{done.job.id}#{done.number}", ATTEMPTS: str(done.number),
            ROUND: str(done.job.round_start), DUE: repr(done.finished + delay),
            DELAY: repr(delay)})

    async def _publish(self, subject: str, data: bytes, headers: dict[str, str]) -> bool:
        """Publish until JetStream acknowledges, for up to RECORD_WAIT_S: True once it
        did. publish_async: the shared reply inbox (js.publish makes one per request,
        and costs a third more CPU a delivery)."""
        with anyio.move_on_after(RECORD_WAIT_S):
            while True:
                try:
                    with anyio.fail_after(PUBLISH_TIMEOUT_S):
                        published = await self._bus.js.publish_async(subject, data,
                                                                      headers=headers)
                        await published
                    return True
                except Exception as exc:  # noqa: BLE001 - NATS away for now: again
                    log.debug("cluster: publishing to %s: %s", subject,
                              str(exc) or type(exc).__name__)
                await anyio.sleep(PUBLISH_RETRY_S)
        return False

    async def _settled(self, msg: Any, execution_id: str, confirm: bool) -> None:
        """Acknowledged, and with `confirm` known to be: an ack lost with a NATS server
        would have JetStream send the execution again after ACK_WAIT_S."""
        if not confirm:
            try:
                await msg.ack()
                return
            except Exception as exc:  # noqa: BLE001 - not sent: confirmed below
                log.debug("cluster: acknowledging %s: %s", execution_id,
                          str(exc) or type(exc).__name__)
        with anyio.move_on_after(RECORD_WAIT_S):
            while True:
                try:
                    await msg.ack_sync(timeout=ACK_TIMEOUT_S)
                    return
                except Exception as exc:  # noqa: BLE001 - NATS away for now: again
                    log.debug("cluster: acknowledging %s: %s", execution_id,
                              str(exc) or type(exc).__name__)
                await anyio.sleep(PUBLISH_RETRY_S)
        log.error("cluster: execution %r was attempted but its acknowledgement was not "
                  "confirmed in %.0fs; JetStream may send it again", execution_id,
                  RECORD_WAIT_S)


def _carried(headers: dict[str, str] | None) -> tuple[int, int, float]:
    """(attempts made, attempts before its last redelivery, seconds until the next is
    due) as a retry's, a held or a redelivered copy carries them; (0, 0, 0) for an
    execution's first copy. The wait is at most the delay the copy was
    given, so a clock behind the one that stamped it cannot hold it longer."""
    if not headers or ATTEMPTS not in headers:
        return 0, 0, 0.0
    try:
        made = max(0, min(int(headers[ATTEMPTS]), 1_000_000))
        round_start = max(0, min(int(headers.get(ROUND, "0")), made))
        delay = float(headers.get(DELAY, "0"))
        wait = min(float(headers.get(DUE, "0")) - time.time(), delay)
    except ValueError:
        return 0, 0, 0.0
    return made, round_start, wait if math.isfinite(wait) and wait > MIN_WAIT_S else 0.0


async def _close(session: aiohttp.ClientSession) -> None:
    with anyio.CancelScope(shield=True):  # a shutdown must not leave it half closed
        await session.close()
