"""State every node applies alike (docs/cluster.md): silences and disabled
integrations, each in a key-value bucket that every node watches, so a silence added
on any node mutes the firings every owner evaluates, and a 410 seen by one node stops
delivery on all. A disabled integration's executions wait in the RUNHOOK_HELD work
queue (PENDING, unsent) until `runhook enable` puts them back on the executions queue."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

import anyio
import anyio.abc
import msgspec
import nats.js.errors
from anyio.abc import TaskStatus
from nats.js.api import AckPolicy, ConsumerConfig
from nats.js.kv import KeyValue

from runhook.cluster.buckets import Bounds
from runhook.cluster.bus import (
    ATTEMPTS,
    DISABLED,
    EXECUTION_SUBJECT,
    HELD,
    HELD_SUBJECT,
    MSG_ID,
    ROUND,
    SILENCES,
    Bus,
    take,
)
from runhook.config.runtime import Runtime
from runhook.core.clock import STREAM_TIME
from runhook.core.executions import Job
from runhook.ingest.silencing import Refused, accepted, too_many
from runhook.triggers.silences import EXPIRED_LISTED_S, Silence, Silences

log = logging.getLogger("runhook.cluster")
RETRY_S = 1.0
RESUME_BATCH = 200
RESUME_WAIT_S = 0.5
_DELETED = ("DEL", "PURGE")
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]{1,64}")


def bounds(runtime: Runtime) -> Bounds:
    """The shared buckets' bounds by this node's settings."""
    server = runtime.settings.config.server
    return Bounds(server.max_silences, server.max_silence_pattern)


class Disable(msgspec.Struct, array_like=True, forbid_unknown_fields=True):
    """An entry of the disabled bucket: the integration's name and why."""

    name: str
    reason: str


def key_of(name: str) -> str:
    """A bucket key and subject token for an integration: its name when that is a
    plain word, else its bytes in hex (a name may hold dots or spaces)."""
    return name if _PLAIN_KEY.fullmatch(name) else "x" + name.encode().hex()


def silence_fields(silence: Silence) -> list[Any]:
    """A silence as compile_silence takes it back (the patterns as written)."""
    def source(pattern: object) -> str | None:
        return getattr(pattern, "source", None)

    return [silence.id, silence.automation, source(silence.run_name), source(silence.group),
            source(silence.collection), silence.comment, silence.created_at, silence.ends_at,
            silence.expired_at]


class Shared:
    """This node's view of the shared state, kept by watching the buckets: `silences`
    (the daemon's own, which the scope actors read) and `disabled` (name -> why).
    `run` returns to its starter only once both buckets were read whole, so no
    partition evaluates before this node knows the silences."""

    def __init__(self, bus: Bus, silences: Silences, runtime: Runtime) -> None:
        self._bus = bus
        self._runtime = runtime
        self.silences = silences
        self.disabled: dict[str, str] = {}
        # Entries not applied (malformed, past a bound, under another key): counted,
        # each logged once (a watch read again reads them again).
        self.refused = 0
        self._said: set[tuple[str, str, int]] = set()
        self._tg: anyio.abc.TaskGroup | None = None
        self._resuming: set[str] = set()
        self._again: set[str] = set()  # asked to resume while resuming: once more after

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        async with anyio.create_task_group() as tg:
            self._tg = tg
            await tg.start(self._follow, SILENCES, self._bus.silences, self._silences_are,
                           self._silence_changed)
            await tg.start(self._follow, DISABLED, self._bus.disabled, self._disabled_are,
                           self._disabled_changed)
            task_status.started()

    async def _follow(self, bucket: str, kv: KeyValue, whole: Callable[[list[Any]], None],
                      changed: Callable[[Any], None], *,
                      task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """The bucket read whole (`whole`), then each change (`changed`); watched
        again from the start after a failure (the whole read replaces what was)."""
        started = False
        while True:
            try:
                watcher = await kv.watchall()
                try:
                    entries: list[Any] = []
                    async for entry in watcher:
                        if entry is None:  # the end of what the bucket held
                            break
                        entries.append(entry)
                    whole(entries)
                    if not started:
                        started = True
                        task_status.started()
                    async for entry in watcher:
                        if entry is not None:
                            changed(entry)
                finally:
                    with anyio.CancelScope(shield=True):
                        await watcher.stop()  # type: ignore[no-untyped-call]
            except Exception as exc:  # noqa: BLE001 - NATS away: watch again shortly
                log.warning("cluster: watching %s: %s; again", bucket,
                            str(exc) or type(exc).__name__)
            await anyio.sleep(RETRY_S)

    # -- silences

    def _silences_are(self, entries: list[Any]) -> None:
        self.silences.all = ()
        for entry in entries:
            if entry.operation not in _DELETED:
                self._silence_changed(entry)

    def _silence_changed(self, entry: Any) -> None:
        if entry.operation in _DELETED:
            self.silences.all = tuple(s for s in self.silences.all if s.id != entry.key)
            return
        settings = self._runtime.settings
        try:
            silence = accepted(bytes(entry.value or b""), entry.key, settings)
            # As `silence add` counts: those kept (active, and ended within 24 h).
            self.silences.forget_before(STREAM_TIME.now() - EXPIRED_LISTED_S)
            kept = len(self.silences.all)
            if self.silences.get(silence.id) is None and \
                    kept >= settings.config.server.max_silences:
                raise Refused(too_many(kept))
        except Refused as exc:
            self._refuse(SILENCES, entry, str(exc))
            # A key put again with something refused no longer holds what it held.
            self.silences.all = tuple(s for s in self.silences.all if s.id != entry.key)
            return
        self.silences.put(silence)

    def _refuse(self, bucket: str, entry: Any, why: str) -> None:
        """An entry not applied: counted, and logged once (with its key, not its value)."""
        said = (bucket, str(entry.key), int(entry.revision or 0))
        if said in self._said:
            return
        if len(self._said) > 10_000:  # a flood of them: forget, say again at worst
            self._said.clear()
        self._said.add(said)
        self.refused += 1
        log.error("cluster: %s entry %r (revision %d) is not applied: %s", bucket,
                  said[1][:200], said[2], why[:500])

    async def put_silence(self, silence: Silence) -> None:
        """Into the bucket, then in force here at once (the other nodes apply it as
        their watch brings it, within moments)."""
        value = msgspec.json.encode(silence_fields(silence))
        longest = bounds(self._runtime).silence_value
        if len(value) > longest:
            raise Refused(f"the silence is {len(value)} bytes, more than the {longest} the "
                          f"cluster's {SILENCES} bucket takes (a shorter comment?)")
        try:
            await self._bus.silences.put(silence.id, value)
        except nats.js.errors.APIError as exc:  # a full bucket, among others
            raise Refused(f"not saved in the cluster's {SILENCES} bucket: {exc}") from None
        self.silences.put(silence)

    async def forget_silences(self, ids: list[str]) -> None:
        """Silences no longer listed anywhere (ended over a day ago) leave the bucket,
        without the marker a purge leaves (markers would fill the bucket over months);
        no node needs telling: every node stops listing them by the time alone."""
        for silence_id in ids:
            try:
                await self._bus.js.purge_stream(f"KV_{SILENCES}",
                                                subject=f"$KV.{SILENCES}.{silence_id}")
            except Exception as exc:  # noqa: BLE001 - the next add tries again
                log.debug("cluster: forgetting silence %s: %s", silence_id, exc)

    # -- disabled integrations

    def _disabled_are(self, entries: list[Any]) -> None:
        was = self.disabled
        self.disabled = {}
        for entry in entries:
            if entry.operation not in _DELETED:
                self._disabled_changed(entry)
        for name in set(was) - set(self.disabled):
            self._resume_soon(name)

    def _disabled_changed(self, entry: Any) -> None:
        if entry.operation in _DELETED:
            self._enabled(entry.key)
            return
        try:
            found = msgspec.json.decode(bytes(entry.value or b""), type=Disable)
            if key_of(found.name) != entry.key:
                # `runhook enable` deletes key_of(name): under another key it would stay.
                raise ValueError(f"it names {found.name[:200]!r}, whose key is another")
        except (msgspec.DecodeError, ValueError) as exc:  # ValidationError is one
            self._refuse(DISABLED, entry, f"not a disabled integration: {exc}")
            self._enabled(entry.key)  # the key no longer says what it said
            return
        self.disabled[found.name] = found.reason

    def _enabled(self, key: str) -> None:
        for name in [n for n in self.disabled if key_of(n) == key]:
            del self.disabled[name]
            log.info("cluster: integration %s enabled", name)
            self._resume_soon(name)

    async def disable(self, name: str, reason: str) -> None:
        """A 410 seen here: in force here at once, then in the bucket for every node."""
        self.disabled[name] = reason
        await self._bus.disabled.put(key_of(name), msgspec.json.encode([name, reason]))

    async def enable(self, name: str) -> str | None:
        """Delivery resumes on every node; returns why it was disabled, if it was."""
        was = self.disabled.pop(name, None)
        await self._bus.disabled.delete(key_of(name))
        self._resume_soon(name)
        return was

    async def hold(self, msg: Any, job: Job) -> None:
        """An execution of a disabled integration: kept in RUNHOOK_HELD (its attempts
        so far with it), then taken off the executions queue. Kept under the
        message's own queue position, so a node dying between the two keeps it once."""
        subject = f"{HELD_SUBJECT}.{key_of(job.integration)}"
        await self._bus.js.publish(subject, msg.data, headers={
            MSG_ID: f"held-{msg.metadata.sequence.stream}", ATTEMPTS: str(job.attempts),
            ROUND: str(job.round_start)})
        await msg.ack()
        log.info("cluster: execution %s is not sent: integration %s is disabled; it waits "
                 "(PENDING) for `runhook enable %s`", job.id, job.integration, job.integration)
        if job.integration not in self.disabled:
            self._resume_soon(job.integration)  # enabled meanwhile: its resume may be over

    def _resume_soon(self, name: str) -> None:
        if name in self._resuming:
            self._again.add(name)
        elif self._tg is not None:
            self._resuming.add(name)
            self._tg.start_soon(self._resume, name, name=f"resuming {name}")

    async def _resume(self, name: str) -> None:
        """Put `name`'s held executions back on the executions queue (every node that
        saw the enable does this; they share one consumer, so each goes back once)."""
        key = key_of(name)
        try:
            subscription = await self._bus.js.pull_subscribe(
                f"{HELD_SUBJECT}.{key}", durable=f"resume-{key}", stream=HELD,
                config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, inactive_threshold=60.0))
            try:
                count = 0
                while name not in self.disabled:
                    messages = await take(subscription, RESUME_BATCH, RESUME_WAIT_S)
                    if not messages:
                        break
                    for msg in messages:
                        headers = dict(msg.headers or {})
                        # A new message id: the execution's own is in the queue's
                        # duplicate window already.
                        headers[MSG_ID] = f"{headers.get(MSG_ID, '')}@{msg.metadata.sequence.stream}"
                        await self._bus.js.publish(EXECUTION_SUBJECT, msg.data, headers=headers)
                        await msg.ack()
                        count += 1
                if count:
                    log.info("cluster: %d held execution%s of %s back on the queue", count,
                             "" if count == 1 else "s", name)
            finally:
                await subscription.unsubscribe()
        except Exception as exc:  # noqa: BLE001 - the next enable (or hold) resumes them
            log.warning("cluster: putting back %s's held executions: %s", name,
                        str(exc) or type(exc).__name__)
        finally:
            self._resuming.discard(name)
            if name in self._again:
                self._again.discard(name)
                self._resume_soon(name)

