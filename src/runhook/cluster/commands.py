"""The commands that change state, answered by the cluster node that received them
(docs/cluster.md): silences and an integration's switch go to the shared buckets
(cluster/shared.py), a redelivery puts the execution back on the executions queue
under its own id, and `runhook test` sends from this node (a probe of its reach),
recorded on the history stream that every node's history mirrors."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from typing import Any

import aiohttp
import anyio

from runhook.cluster.bus import (
    ATTEMPTS,
    EXECUTION_SUBJECT,
    HISTORY_SUBJECT,
    MSG_ID,
    ROUND,
    Bus,
    encode,
)
from runhook.cluster.shared import Shared
from runhook.core.executions import ExecutionRow
from runhook.delivery import attempt
from runhook.delivery.ssrf import connector
from runhook.ingest import commands, silencing
from runhook.ingest.commands import (
    Enabled,
    Redelivered,
    Refused,
    Tested,
)
from runhook.ingest.protocol import (
    Enable,
    Redeliver,
    SilenceAdd,
    TestIntegration,
)
from runhook.store.rows import Execution
from runhook.triggers.silences import EXPIRED_LISTED_S

PUBLISH_TIMEOUT_S = 10.0
REDELIVERY_REASON = "redelivery requested"


class ClusterCommands:
    """ingest/commands.py's SharedCommands for a cluster node."""

    def __init__(self, daemon: commands.Daemon, bus: Bus, shared: Shared) -> None:
        self._daemon = daemon
        self._bus = bus
        self._shared = shared

    async def enable(self, query: Enable) -> Enabled:
        name = query.integration
        if name not in self._daemon.settings.integrations:
            raise Refused(f"no integration {name!r}")
        return Enabled(integration=name, was_disabled=await self._shared.enable(name))

    async def silence_add(self, request: SilenceAdd, now: float) -> silencing.SilenceView:
        """Checked as on one machine, then into the shared bucket."""
        daemon = self._daemon
        before = {s.id for s in daemon.silences.all}
        silence = silencing.compose(request, daemon, now)  # drops those listed no longer
        # Those first: the bucket is bounded (docs/cluster.md), they must not fill it.
        await self._shared.forget_silences(sorted(before - {s.id for s in daemon.silences.all}))
        await self._shared.put_silence(silence)
        return silencing.view(silence, now)

    async def silence_expire(self, silence_id: str, now: float) -> silencing.SilenceView:
        """As on one machine: ended now (listed 24 h more); an ended one is left as is."""
        silence = self._daemon.silences.get(silence_id)
        if silence is None:
            raise silencing.Refused(f"no silence {silence_id!r} (expired ones are forgotten "
                                    f"after {EXPIRED_LISTED_S / 3600:.0f} h)")
        if silence.expired_at is None and silence.active(now):
            silence = replace(silence, ends_at=now, expired_at=now)
            await self._shared.put_silence(silence)
        return silencing.view(silence, now)

    async def redeliver(self, query: Redeliver) -> Redelivered:
        """Each chosen execution back to PENDING on every node's history, then on the
        executions queue with its own id (the receiver sees the same webhook-id) and
        a fresh retry schedule, from its attempts so far."""
        chosen, answer = await commands.choose(query, self._daemon)
        now = time.time()
        js = self._bus.js
        if chosen:
            ack = await js.publish_async(HISTORY_SUBJECT, encode(
                ["redeliver", [[REDELIVERY_REASON, now, now, e.id] for e in chosen]]))
            with anyio.fail_after(PUBLISH_TIMEOUT_S):
                await ack
        acks = []
        for execution in chosen:
            number = str(execution.attempts)
            acks.append(await js.publish_async(EXECUTION_SUBJECT, encode(_row(execution, now)),
                                               headers={MSG_ID: f"{execution.id}@r{now:.6f}",
                                                        ATTEMPTS: number, ROUND: number}))
        with anyio.fail_after(PUBLISH_TIMEOUT_S):
            for published in acks:  # nats-py's futures, all in flight already
                await published
        return answer

    async def test(self, query: TestIntegration) -> Tested:
        """Sent from this node, once, never retried; its execution and attempt go on
        the history stream as one attempt record (every node's history shows it)."""
        settings = self._daemon.settings
        integration = settings.integrations.get(query.integration)
        if integration is None:
            raise Refused(f"no integration {query.integration!r}")
        async with aiohttp.ClientSession(
                connector=connector(1, integration.allow_private),
                cookie_jar=aiohttp.DummyCookieJar()) as session:
            probed = await attempt.probe(session, settings, query.integration, query.payload)
        if probed.row is not None:
            row = probed.row
            record = ["attempt", probed.attempt,
                      [probed.state, probed.reason, probed.finished, None, 1, row.id], row]
            ack = await self._bus.js.publish_async(
                HISTORY_SUBJECT, encode(record), headers={MSG_ID: f"{row.id}#1"})
            with anyio.fail_after(PUBLISH_TIMEOUT_S):
                await ack
        return Tested(test=probed.answer)


def _row(execution: Execution, now: float) -> ExecutionRow:
    """The executions queue's message of `execution`, PENDING again."""
    context: Any = json.dumps(execution.context)
    return ExecutionRow(execution.id, execution.automation, execution.scope,
                        execution.event_kind, execution.event_type, execution.event_id,
                        execution.action_kind, execution.integration, "PENDING",
                        REDELIVERY_REASON, context, execution.run_id, execution.created_at,
                        now, now)
