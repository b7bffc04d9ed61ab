"""The JetStream layout every node agrees on: streams, buckets, subjects, the
partition of a scope, and how events and executions are put on the wire."""

from __future__ import annotations

import logging
import zlib
from typing import Any

import anyio
import msgspec
import nats
import nats.errors
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, ObjectStoreConfig, RetentionPolicy, StreamConfig
from nats.js.kv import KeyValue
from nats.js.object_store import ObjectStore

from runhook.cluster.buckets import DISABLED_BOUNDS, Bounds, bounded
from runhook.cluster.connection import SecureClient, credentials
from runhook.cluster.connection import refusal as refusal_of
from runhook.config.cluster import DUPLICATE_WINDOW_S, ClusterSettings, public
from runhook.config.nats_access import unauthenticated
from runhook.core.durations import describe
from runhook.core.events import ArtifactEvents, Event, RunEvents
from runhook.core.schema import StartupError

log = logging.getLogger("runhook.cluster")

EVENTS = "RUNHOOK_EVENTS"  # subjects runhook.ev.<partition>; limits retention
EXECUTIONS = "RUNHOOK_EXECUTIONS"  # subject runhook.ex; work queue: one delivery each
HISTORY = "RUNHOOK_HISTORY"  # subject runhook.hist; what every node's history mirrors
LEASES = "RUNHOOK_LEASES"  # KV: p<n> -> owning node, expiring after `lease`
NODES = "RUNHOOK_NODES"  # KV: node -> alive, expiring after `lease`
CHECKPOINTS = "RUNHOOK_CHECKPOINTS"  # object store: a partition's checkpoints, by name
LAYOUT = "layout"  # in POSITIONS: the number of partitions, fixed by the first node
POSITIONS = "RUNHOOK_POSITIONS"  # KV: p<n> -> its current checkpoint (the fencing token)
SILENCES = "RUNHOOK_SILENCES"  # KV: silence id -> its fields (every node applies them)
DISABLED = "RUNHOOK_DISABLED"  # KV: integration key -> its name and why a 410 disabled it
HELD = "RUNHOOK_HELD"  # subjects runhook.held.<key>; work queue: a disabled integration's
HELD_SUBJECT = "runhook.held"  # executions, until `runhook enable` puts them back
EXECUTION_SUBJECT = "runhook.ex"
HISTORY_SUBJECT = "runhook.hist"
# In the history stream, beside its records: each partition's fence, a message its
# owner publishes when it claims the partition. The owner's history records are
# published on the condition that the fence is still the one it published (see
# positions.py), so an owner that lost the partition has its executions refused.
FENCE_SUBJECTS = "runhook.fence.*"
# Headers of an event message: the scope it is for, and its time as the ingress saw it.
SCOPE = "Runhook-Scope"
TIME = "Runhook-Time"
RECEIVED = "Runhook-Received"
MSG_ID = "Nats-Msg-Id"
# Headers of an executions message put back on the queue (redelivered, or held while
# its integration was disabled): the attempts made before, and those before the last
# redelivery (its retry schedule starts again there).
ATTEMPTS = "Runhook-Attempts"
ROUND = "Runhook-Round"
CLOSE_TIMEOUT_S = 2.0
RETRY_S = 1.0
REST_WAIT_S = 0.005  # for the rest of a batch after its first message
CONNECT_WAIT_S = 60.0

_events = msgspec.msgpack.Decoder(ArtifactEvents | RunEvents)
_encoder = msgspec.msgpack.Encoder()
encode = _encoder.encode


def partition_of(scope: str, partitions: int) -> int:
    """Stable across nodes and restarts (not Python's salted hash)."""
    return zlib.crc32(scope.encode()) % partitions


def event_subject(partition: int) -> str:
    return f"runhook.ev.{partition}"


def lease_key(partition: int) -> str:
    return f"p{partition}"


def decode_event(data: bytes) -> Event:
    """msgpack, not JSON: a NaN metric stays NaN (RUN_METRIC_NONFINITE needs it)."""
    event: Event = _events.decode(data)
    return event


def decode(data: bytes, kind: Any) -> Any:
    return msgspec.msgpack.decode(data, type=kind)


async def take(subscription: Any, most: int, wait: float) -> list[Any]:
    """Up to `most` messages of a pull consumer: waits up to `wait` for the first, then
    takes what is there at once. nats-py's fetch(most) alone, when the first message
    came to an empty consumer, waits out its whole timeout for the batch to fill:
    up to `wait` of latency at every stage a trickle of events passes."""
    try:
        first = await subscription.fetch(1, timeout=wait)
    except (TimeoutError, nats.errors.TimeoutError):
        return []
    if most <= 1:
        return list(first)
    try:
        return [*first, *await subscription.fetch(most - 1, timeout=REST_WAIT_S)]
    except (TimeoutError, nats.errors.TimeoutError):
        return list(first)


def _seconds(value: float) -> str:
    """A duration as the file says it: "2s", "1.5s", "7d"."""
    return describe(value) if value == round(value) else f"{value:g}s"


class Refused(StartupError):
    """A configuration the cluster cannot take: not retried."""


class Bus:
    """One connection to the NATS cluster and the handles every part uses."""

    def __init__(self, settings: ClusterSettings) -> None:
        self.settings = settings
        self.nc: Client | None = None
        self._closing = False
        self.js: JetStreamContext
        self.leases: KeyValue
        self.nodes: KeyValue
        self.checkpoints: ObjectStore
        self.positions: KeyValue
        self.silences: KeyValue
        self.disabled: KeyValue
        self.bounds = Bounds()  # the shared buckets' (the node sets them from its settings)

    async def connect(self) -> None:
        s = self.settings
        connecting = True

        async def disconnected() -> None:
            if not self._closing:  # a stop's own close is no news
                log.warning("cluster: disconnected from NATS; reconnecting")

        async def reconnected() -> None:
            url = self.nc.connected_url if self.nc else None
            log.info("cluster: reconnected to NATS at %s:%s", url.hostname if url else "?",
                     url.port if url else "?")

        async def error(exc: Exception) -> None:
            if connecting and refusal_of(exc, s.access) is not None:
                raise exc  # out of nats-py's endless retry: it would be refused again
            log.warning("cluster: NATS: %s", exc)

        if open_to_all := unauthenticated(s.servers, s.access):  # and in `runhook status`
            log.warning("cluster: %s", open_to_all)
        deadline = anyio.current_time() + CONNECT_WAIT_S
        while True:  # NATS may be starting too (a host's boot): wait for it a while
            connecting = True
            try:
                self.nc = SecureClient(s.access.tls)
                await self.nc.connect(
                    servers=s.servers, name=f"runhook {s.node}", max_reconnect_attempts=-1,
                    # nats-py annotates an int, and sleeps any number of seconds
                    reconnect_time_wait=0.25,  # type: ignore[arg-type]
                    connect_timeout=2, allow_reconnect=True, disconnected_cb=disconnected, reconnected_cb=reconnected, error_cb=error,
                    **credentials(s.access))
                connecting = False
                self.js = self.nc.jetstream(timeout=5)
                await self._ensure()
                return
            except Refused:
                await self.close()
                raise
            except Exception as exc:  # say what, and try again
                refusal = refusal_of(exc, s.access)
                reason = refusal or str(exc) or type(exc).__name__
                connecting = False
                await self.close()
                self._closing = False
                if refusal is not None:  # trying again would be refused again
                    raise Refused(f"NATS at {public(s.servers)} (cluster.nats): "
                                  f"{refusal}") from None
                if anyio.current_time() > deadline:
                    raise StartupError(f"cannot use NATS JetStream at {public(s.servers)} "
                                       f"(cluster.nats): {reason}") from exc
                log.warning("cluster: NATS JetStream at %s: %s; trying again",
                            public(s.servers), reason)
                await anyio.sleep(RETRY_S)

    async def _ensure(self) -> None:
        """Create what is missing; what exists must have been made with this node's
        settings (every node runs this): a setting fixed at creation that differs is
        refused at once, naming it and both values."""
        s = self.settings
        streams = [
            StreamConfig(name=EVENTS, subjects=["runhook.ev.*"], num_replicas=s.replicas,
                         retention=RetentionPolicy.LIMITS, max_age=s.retention,
                         duplicate_window=DUPLICATE_WINDOW_S),
            StreamConfig(name=EXECUTIONS, subjects=[EXECUTION_SUBJECT],
                         num_replicas=s.replicas, retention=RetentionPolicy.WORK_QUEUE,
                         duplicate_window=DUPLICATE_WINDOW_S),
            StreamConfig(name=HISTORY, subjects=[HISTORY_SUBJECT, FENCE_SUBJECTS],
                         num_replicas=s.replicas,
                         retention=RetentionPolicy.LIMITS, max_age=s.retention,
                         duplicate_window=DUPLICATE_WINDOW_S),
        ]
        for config in streams:
            name = config.name or ""
            existing = await self._existing(name)
            if existing is None:
                try:
                    await self.js.add_stream(config)
                except nats.js.errors.BadRequestError as refused:  # made meanwhile?
                    existing = await self._existing(name)
                    if existing is None:  # no: the refusal says why (no peers, ...)
                        raise refused from None
            if existing is not None:
                self._same(name, existing, retention=config.max_age)
                missing = set(config.subjects or ()) - set(existing.subjects or ())
                if missing:  # made by an older runhook: the fences came later
                    existing.subjects = [*(existing.subjects or ()), *sorted(missing)]
                    await self.js.update_stream(existing)
        for bucket, ttl in ((LEASES, s.lease), (NODES, s.lease), (POSITIONS, None)):
            existing = await self._existing(f"KV_{bucket}")
            if existing is not None:
                self._same(bucket, existing, lease=ttl)
        self.leases = await self.js.create_key_value(KeyValueConfig(
            bucket=LEASES, ttl=s.lease, history=1, replicas=s.replicas))
        self.nodes = await self.js.create_key_value(KeyValueConfig(
            bucket=NODES, ttl=s.lease, history=1, replicas=s.replicas))
        self.positions = await self.js.create_key_value(KeyValueConfig(
            bucket=POSITIONS, history=1, replicas=s.replicas))
        await self._same_layout()
        await self._unique_node()
        existing = await self._existing(f"OBJ_{CHECKPOINTS}")
        if existing is not None:
            self._same(CHECKPOINTS, existing)
        self.checkpoints = await self.js.create_object_store(
            CHECKPOINTS, ObjectStoreConfig(replicas=s.replicas))
        await self._ensure_shared()

    async def _ensure_shared(self) -> None:
        """The state every node applies alike (silences, disabled integrations) and
        where a disabled integration's executions wait."""
        s = self.settings
        self.silences = await bounded(self.js, SILENCES, s.replicas, *self.bounds.silences)
        self.disabled = await bounded(self.js, DISABLED, s.replicas, *DISABLED_BOUNDS)
        try:
            await self.js.stream_info(HELD)
        except nats.js.errors.NotFoundError:
            try:
                await self.js.add_stream(StreamConfig(
                    name=HELD, subjects=[f"{HELD_SUBJECT}.*"], num_replicas=s.replicas,
                    retention=RetentionPolicy.WORK_QUEUE, duplicate_window=DUPLICATE_WINDOW_S))
            except nats.js.errors.BadRequestError as refused:  # made meanwhile?
                if await self._existing(HELD) is None:
                    raise refused from None

    async def _existing(self, stream: str) -> StreamConfig | None:
        try:
            return (await self.js.stream_info(stream)).config
        except nats.js.errors.NotFoundError:
            return None

    def _same(self, name: str, existing: StreamConfig, retention: float | None = None,
              lease: float | None = None) -> None:
        """JetStream fixes a stream's replicas and its messages' age (a bucket's TTL) when
        it is made; a node wanting others would have retried a minute and then blamed
        cluster.nats ("stream name already in use with a different configuration")."""
        fixed: list[tuple[str, float, float]] = [
            ("replicas", self.settings.replicas, existing.num_replicas or 1)]
        if retention is not None:
            fixed.append(("retention", retention, existing.max_age or 0.0))
        if lease is not None:
            fixed.append(("lease", lease, existing.max_age or 0.0))
        for setting, mine, theirs in fixed:
            if abs(mine - theirs) > 1e-3:
                show = (lambda v: str(int(v))) if setting == "replicas" else _seconds
                raise Refused(
                    f"cluster.{setting}: {show(mine)} here, but {name} was made with "
                    f"{show(theirs)}; it is fixed when the cluster first starts: give every "
                    f"node the same (or delete {name} to make it again, losing what it holds)")

    async def _same_layout(self) -> None:
        """Every node must split scopes alike: the first node records `partitions`,
        and a node configured otherwise refuses to start (it would split a scope's
        state across two partitions)."""
        mine = str(self.settings.partitions).encode()
        try:
            await self.positions.create(LAYOUT, mine)
            return
        except nats.js.errors.KeyWrongLastSequenceError:
            pass
        entry = await self.positions.get(LAYOUT)
        if entry.value != mine:
            theirs = (entry.value or b"?").decode(errors="replace")
            raise Refused(f"cluster.partitions: {self.settings.partitions} here, but the "
                          f"cluster's streams were made with {theirs}; every node needs the "
                          "same number")

    async def _unique_node(self) -> None:
        """No two live nodes share a name (their leases would be one). A name still in
        RUNHOOK_NODES may be this node's own, killed and restarted: it is waited for
        until it expires (one lease); a name that stays is another live node's."""
        node = self.settings.node
        deadline = anyio.current_time() + self.settings.lease + 1.0
        while True:
            try:
                await self.nodes.get(node)
            except nats.js.errors.KeyNotFoundError:  # KeyDeletedError is one too
                return
            if anyio.current_time() > deadline:
                raise Refused(f"cluster.node: a live node is already named {node!r}; each "
                              "node needs a name of its own (the default is the host name)")
            await anyio.sleep(0.25)

    async def subscribe(self, what: str, subscribe: Any) -> Any:
        """`subscribe()` until it succeeds: at a start, or after a NATS node went,
        JetStream may answer nothing for a while; the node waits, saying so."""
        while True:
            try:
                return await subscribe()
            except Exception as exc:  # noqa: BLE001 - not yet: again shortly
                log.warning("cluster: %s: %s; trying again", what,
                            str(exc) or type(exc).__name__)
                await anyio.sleep(RETRY_S)

    async def close(self) -> None:
        """Close, not drain: a drain waits for every fetched message to be processed,
        which a stopping node does not do (they come back to the next owner)."""
        if self.nc is not None:
            self._closing = True
            try:
                with anyio.fail_after(CLOSE_TIMEOUT_S):
                    await self.nc.close()
            except Exception as exc:  # noqa: BLE001 - closing anyway
                log.debug("cluster: closing the NATS connection: %s", exc)
