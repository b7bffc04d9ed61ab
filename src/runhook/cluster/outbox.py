"""What a partition's commits caused, put on JetStream: every execution to the
history stream (which every node's history mirrors), and those waiting for a
delivery to the executions work queue. Both keyed by the execution id, so an
execution evaluated again by a new owner is dropped as a duplicate. Only an owner
publishes: while its lease is known valid, and fenced (positions.py), so a node
that lost the partition has its records refused and sends nothing to the queue."""

from __future__ import annotations

import asyncio
import logging

import anyio
import anyio.abc
import nats.js.errors
from anyio.abc import TaskStatus

from runhook.cluster.bus import (
    EXECUTION_SUBJECT,
    HISTORY_SUBJECT,
    MSG_ID,
    Bus,
    encode,
    partition_of,
)
from runhook.cluster.leases import Tenure
from runhook.cluster.positions import Lost, fenced
from runhook.core.executions import ExecutionRow
from runhook.store.database import OnCommit, Store, Write
from runhook.store.statements import INSERT_EXECUTION, INSERT_GROUPED

log = logging.getLogger("runhook.cluster")

# This node's history mirror may have the row already (an execution a previous owner
# published, evaluated again here): the local copy is then left as it is.
# The execution inserts, each by its rule for a row already there.
_IF_NEW: dict[str, str] = {INSERT_EXECUTION: INSERT_EXECUTION.if_new, INSERT_GROUPED: INSERT_GROUPED.if_new}
FLUSH_TIMEOUT_S = 10.0
# A publish that failed (NATS away, a stream's leader moving) is tried again after
# this, doubling up to PUBLISH_RETRY_MAX_S, for as long as the partition is owned:
# a timer's executions have no event after them to make them again.
PUBLISH_RETRY_S = 0.25
PUBLISH_RETRY_MAX_S = 5.0
QUEUE_TIMEOUT_S = 5.0
WRONG_LAST_SEQUENCE = 10071  # JetStream's error code for a failed expectation


class Owned:
    """What the outbox needs of an owned partition: its fence and its tenure."""

    __slots__ = ("fence", "tenure")

    def __init__(self, fence: int, tenure: Tenure) -> None:
        self.fence = fence
        self.tenure = tenure


class Created:
    """A write's callback that publishes its executions once committed (and marks
    the write as seen: a write submitted twice is published once)."""

    __slots__ = ("outbox", "rows", "then")

    def __init__(self, outbox: Outbox, rows: list[ExecutionRow], then: OnCommit | None
                 ) -> None:
        self.outbox = outbox
        self.rows = rows
        self.then = then

    def __call__(self, error: str | None) -> None:
        if error is None and self.rows:
            self.outbox.publish(self.rows)
        if self.then is not None:
            self.then(error)


class _Sent:
    """One publish of a partition's executions, as its flush waits for it."""

    __slots__ = ("done", "error", "scope")

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.error: BaseException | None = None
        self.scope = anyio.CancelScope()  # a flush that timed out cancels it


class Outbox:
    """Publishes kept per partition: a partition's flush waits for its own executions
    (a timer's included) and no other's, so it advances its position only over
    executions JetStream acknowledged, and a failure stops the partition it is of.
    Every publish runs under the Outbox's task group (`run`): one a partition gave
    up goes on there, unwaited, and none outlives the node's work."""

    def __init__(self, bus: Bus) -> None:
        self._bus = bus
        self._pending: dict[int, list[_Sent]] = {}
        self._owned: dict[int, Owned] = {}
        self.fenced_out: set[int] = set()  # partitions whose records JetStream refused
        # Executions committed per partition: a checkpoint is due when this moved
        # (a timer's firing included), not only when the stream position did.
        self.committed: dict[int, int] = {}
        self._tg: anyio.abc.TaskGroup | None = None
        # One fenced record in flight per partition: a clustered stream refuses a
        # publish that expects a subject's last sequence while another expecting the
        # same one is in process (err_code 10164, "wrong last sequence"), and the
        # partition then waited out a back-off (0.25 s, doubling) in its flush.
        self._turns: dict[int, anyio.Lock] = {}

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        async with anyio.create_task_group() as tg:
            self._tg = tg
            task_status.started()
            try:
                await anyio.sleep_forever()
            finally:
                self._tg = None

    def publish(self, rows: list[ExecutionRow]) -> None:
        tg = self._tg
        if tg is None:  # the node's work is over: nobody flushes these any more
            log.debug("cluster: %d executions committed after the outbox closed; the "
                      "next owner of their partitions makes them again", len(rows))
            return
        partitions = self._bus.settings.partitions
        by_partition: dict[int, list[ExecutionRow]] = {}
        for row in rows:
            by_partition.setdefault(partition_of(row.scope, partitions), []).append(row)
        for partition, part in by_partition.items():
            self.committed[partition] = self.committed.get(partition, 0) + len(part)
            sent = _Sent()
            self._pending.setdefault(partition, []).append(sent)
            tg.start_soon(self._publish, partition, part, sent)

    async def _publish(self, partition: int, rows: list[ExecutionRow], sent: _Sent) -> None:
        """The history record first, fenced; then the work queue. A failure is tried
        again (the same record, the same ids) until it succeeds or the partition is
        given up; a refusal by the fence is final: the partition is lost."""
        delay = PUBLISH_RETRY_S
        recorded = False
        try:
            with sent.scope:
                while True:
                    try:
                        recorded = recorded or await self._record(partition, rows)
                        await self._queue(rows)
                        return
                    except Lost:
                        raise
                    except Exception as exc:  # noqa: BLE001 - NATS away: again shortly
                        log.warning("cluster: partition %d: publishing %d executions: %s; "
                                    "trying again in %.2fs", partition, len(rows),
                                    str(exc) or type(exc).__name__, delay)
                    await anyio.sleep(delay)
                    delay = min(PUBLISH_RETRY_MAX_S, delay * 2)
        except Exception as exc:  # noqa: BLE001 - its partition's flush raises it
            sent.error = exc
        finally:
            sent.done.set()

    async def _record(self, partition: int, rows: list[ExecutionRow]) -> bool:
        """One history record for the commit's rows, without a message id (a copy,
        made again by a new owner, is applied twice by the mirrors, which changes
        nothing), on the condition that this node's fence is the partition's."""
        owned = self._owned.get(partition)
        if owned is None or not await owned.tenure.confirm(self._bus.settings.lease):
            if owned is None or owned.tenure.over:
                raise Lost()
            raise RuntimeError("the partition's lease is not confirmed")
        turn = self._turns.get(partition)
        if turn is None:
            turn = self._turns[partition] = anyio.Lock()
        try:
            async with turn:
                await self._bus.js.publish(HISTORY_SUBJECT, encode(["created", rows]),
                                           headers=fenced(owned.fence, partition))
        except nats.js.errors.BadRequestError as exc:
            if exc.err_code == WRONG_LAST_SEQUENCE:  # another node claimed the partition
                self.fenced_out.add(partition)
                log.warning("cluster: partition %d: JetStream refused this node's executions "
                            "(another node claimed the partition)", partition)
                raise Lost() from None
            raise
        return True

    async def _queue(self, rows: list[ExecutionRow]) -> None:
        """One message an execution waiting for delivery, deduplicated by its id (a
        copy there would be a second delivery)."""
        js = self._bus.js
        futures = [await js.publish_async(EXECUTION_SUBJECT, encode(row),
                                          headers={MSG_ID: row.id})
                   for row in rows if row.state == "PENDING" and row.integration is not None]
        # Bounded: nats-py leaves an ack's future unresolved when JetStream answers
        # 503 (a stream full, its leader away); the publish is then tried again.
        with anyio.fail_after(QUEUE_TIMEOUT_S):
            results = await asyncio.gather(*futures, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def flush(self, partition: int) -> bool:
        """Wait (up to FLUSH_TIMEOUT_S) until everything `partition` published so far is
        acknowledged: True; False if some is still being tried (it goes on, and is
        waited for by the next flush). Raises Lost if the fence refused any."""
        pending = list(self._pending.get(partition, ()))
        with anyio.move_on_after(FLUSH_TIMEOUT_S):
            for sent in pending:
                await sent.done.wait()
        waiting = [sent for sent in self._pending.get(partition, ()) if not sent.done.is_set()]
        if waiting:
            self._pending[partition] = waiting
        else:
            self._pending.pop(partition, None)
        if any(isinstance(sent.error, Lost) for sent in pending):
            raise Lost()
        return not waiting

    def own(self, partition: int, fence: int, tenure: Tenure) -> None:
        """`partition` is this node's, fenced by `fence`: its executions may go out."""
        self._owned[partition] = Owned(fence, tenure)
        self.fenced_out.discard(partition)

    def forget(self, partition: int) -> None:
        """A partition given up (or starting again): nothing more of it is published,
        and what was under way stops (its next owner, or its restart, makes the
        executions again under the same ids)."""
        self._owned.pop(partition, None)
        for sent in self._pending.pop(partition, []):
            sent.scope.cancel()


class ClusterStore(Store):
    """The node's SQLite store, whose commits of executions reach the Outbox."""

    outbox: Outbox

    def _wrap(self, write: Write) -> None:
        if isinstance(write.on_commit, Created):
            return
        rows: list[ExecutionRow] = []
        statements = write.statements
        for index, (sql, params) in enumerate(statements):
            if_new = _IF_NEW.get(sql)
            if if_new is not None:
                statements[index] = (if_new, params)
                rows.extend(params)  # type: ignore[arg-type]  # ExecutionRow, GroupedRow
        if rows:
            write.on_commit = Created(self.outbox, rows, write.on_commit)

    async def submit(self, write: Write) -> None:
        self._wrap(write)
        await super().submit(write)

    def submit_nowait(self, write: Write) -> None:
        self._wrap(write)
        super().submit_nowait(write)
