"""The store's writer: one connection applying statements.py with group commit, and
the Store that owns it and the readers (reads.py)."""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, cast

import aiosqlite
import anyio
from anyio.abc import TaskStatus

from runhook.core import constants
from runhook.core.schema import StartupError
from runhook.store import bulk
from runhook.store.files import create_private
from runhook.store.migrations import migrate
from runhook.store.reads import Reads
from runhook.store.statements import PROBE_UNDO, PROBE_WRITE

log = logging.getLogger("runhook.store")

OnCommit = Callable[[str | None], None]
Statement = tuple[str, Sequence[Sequence[Any]]]

class Write:
    """A unit of work for the writer, committed in one transaction with others, and
    a callback told the outcome after the commit. Within a batch the writer groups
    rows by statement across writes (one executemany per statement): rows of one
    statement keep their order, different statements may be reordered. That is
    safe for every write whose statements commute with other writes' statements;
    a `barrier` write (a checkpoint clearing a log) is applied alone, in order."""

    __slots__ = ("barrier", "changes", "on_commit", "statements", "valid")

    def __init__(self, statements: list[Statement], on_commit: OnCommit | None = None,
                 barrier: bool = False) -> None:
        self.statements = statements
        self.on_commit = on_commit
        self.barrier = barrier
        # Asked just before the write is applied: False drops it (on_commit is told
        # STALE), for a write computed from state that a failed write left behind.
        self.valid: Callable[[], bool] | None = None
        # For a barrier write, once on_commit is told: the rows each of its
        # statements changed (adjacent repeats of one statement merged), so a
        # batched delete knows whether it caught up. The rows of other writes are
        # applied together with other writes' rows, so theirs stay unknown (empty).
        self.changes: list[int] = []


STALE = "not written: an earlier write of its scope failed"


class WriteFailed(Exception):
    """A write that `Store.commit` waited for was not committed; the message says why."""


def _tell(write: Write, error: str | None) -> None:
    if write.on_commit is not None:
        try:
            write.on_commit(error)
        except Exception:
            log.exception("commit callback failed")


def _merge(statements: list[Statement]) -> list[tuple[str, list[Sequence[Any]]]]:
    """A barrier's statements in their own order (adjacent repeats merged)."""
    out: list[tuple[str, list[Sequence[Any]]]] = []
    for sql, params in statements:
        if out and out[-1][0] == sql:
            out[-1][1].extend(params)
        else:
            out.append((sql, list(params)))
    return out


class Store(Reads):
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._send, self._receive = anyio.create_memory_object_stream[Write](
            constants.WRITE_QUEUE_SIZE)
        self._writer: aiosqlite.Connection | None = None
        # Two readers: the daemon's own reads (idempotency lookups on ingest, delivery
        # scans, restores) never queue behind a person's query (a large history, the
        # status page's counts), which has its own connection.
        self._reader: aiosqlite.Connection | None = None
        self._queries: aiosqlite.Connection | None = None
        self._snapshots: aiosqlite.Connection | None = None  # run_states' own, see reads.py
        self._snapshot_lock = anyio.Lock()
        self.commits = 0
        self.on_batch: Callable[[int], None] | None = None  # told each batch's size
        self.last_error: str | None = None  # of the last batch that changed rows
        self._probe: anyio.Event | None = None  # set when the probe in flight commits

    async def open(self) -> None:
        try:
            await self._open()
        except (OSError, sqlite3.Error) as exc:
            await self.close()  # its connection thread would keep the process alive
            raise StartupError(f"cannot open the database {self.path}: {exc} "
                               "(server.database)") from None

    async def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        create_private(self.path)
        # Room for every shape of every bulk.py statement: one reprepared per batch
        # would cost more than its rows.
        self._writer = await aiosqlite.connect(self.path, isolation_level=None,
                                               cached_statements=512)
        # WAL is set outside any transaction; it lets the reader query while we write.
        await self._writer.execute("PRAGMA journal_mode=WAL")
        # FULL: an acknowledged event survives power loss too, not only a process
        # crash; group commit is what keeps the fsyncs few.
        await self._writer.execute("PRAGMA synchronous=FULL")
        await self._writer.execute("PRAGMA busy_timeout=5000")
        applied = await migrate(self._writer)
        if applied:
            log.info("database %s: applied migrations %s", self.path, ", ".join(applied))
        self._reader = await aiosqlite.connect(self.path, isolation_level=None)
        await self._reader.execute("PRAGMA query_only=1")
        self._queries = await aiosqlite.connect(self.path, isolation_level=None)
        await self._queries.execute("PRAGMA query_only=1")

    async def close(self) -> None:
        for db in (self._snapshots, self._queries, self._reader, self._writer):
            if db is not None:
                await db.close()
        self._snapshots = self._queries = self._reader = self._writer = None

    async def commit(self, write: Write) -> None:
        """The one way to wait for a write: returns once it is committed, raises
        WriteFailed (with the reason) if it was not. The scope actors and ingest do
        not wait: they evaluate ahead of their commits, so they `submit` with an
        `on_commit` callback and the hot path costs no task or future per write."""
        done = anyio.Event()
        outcome: list[str | None] = []
        then = write.on_commit

        def committed(error: str | None) -> None:
            if then is not None:
                then(error)
            if not done.is_set():
                outcome.append(error)
                done.set()
        write.on_commit = committed
        await self.submit(write)
        await done.wait()
        if outcome[0] is not None:
            raise WriteFailed(outcome[0])

    async def submit(self, write: Write) -> None:
        """Queue a write; waits (backpressure) only while the writer is behind."""
        try:
            self._send.send_nowait(write)
        except anyio.WouldBlock:
            await self._send.send(write)

    def submit_nowait(self, write: Write) -> None:
        """Queue a write without waiting; raises anyio.WouldBlock while the writer is
        behind (a caller that must not be cancelled then shields `submit`)."""
        self._send.send_nowait(write)

    @property
    def queued(self) -> int:
        return self._send.statistics().current_buffer_used

    def finish(self) -> None:
        """No more writes will come: the writer drains what is queued and returns."""
        self._send.close()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """The writer loop. It must survive any failure of a batch, or the database
        wedges: a failed batch is rolled back and its callbacks are told why."""
        assert self._writer is not None
        task_status.started()
        async with self._receive:
            while True:
                try:
                    first = await self._receive.receive()
                except anyio.EndOfStream:
                    return
                batch = [first]
                while len(batch) < constants.MAX_WRITE_BATCH:
                    try:
                        batch.append(self._receive.receive_nowait())
                    except (anyio.WouldBlock, anyio.EndOfStream):
                        break
                # Once dequeued, a batch is written and answered even if shutdown
                # is cancelling us: losing it would lose acknowledged work.
                with anyio.CancelScope(shield=True):
                    stale = [w for w in batch if w.valid is not None and not w.valid()]
                    if stale:
                        batch = [w for w in batch if w.valid is None or w.valid()]
                    error = await self._apply(batch) if batch else None
                    if error is not None and len(batch) > 1:
                        await self._apply_alone(batch, error)
                    else:
                        for write in batch:
                            _tell(write, error)
                    for write in stale:
                        _tell(write, STALE)

    async def _apply_alone(self, batch: list[Write], error: str) -> None:
        """After a batch failed: each write in its own transaction, in order, so one
        write that cannot be stored (a value SQLite refuses) fails alone instead of
        with every client's events beside it. A full disk fails them all again."""
        log.warning("%s: retrying its %d writes one by one", error, len(batch))
        for write in batch:
            if write.valid is not None and not write.valid():
                _tell(write, STALE)  # its scope's earlier write just failed
                continue
            _tell(write, await self._apply([write], quiet=True))

    async def _apply(self, batch: list[Write], quiet: bool = False) -> str | None:
        db = self._writer
        assert db is not None
        try:
            changed = await _in_writer_thread(db, batch)
        except Exception as exc:  # noqa: BLE001 - any failure: roll back, tell, go on
            error = f"database write failed: {exc}"
            if not quiet:
                log.error("%s (%d writes rolled back)", error, len(batch))
            self.last_error = error
            # A COMMIT that failed on a full disk was already rolled back by SQLite.
            if db.in_transaction:
                try:
                    await db.execute("ROLLBACK")
                except sqlite3.Error as rollback:
                    log.warning("rollback after a failed write: %s", rollback)
            return error
        self.commits += 1
        if self.on_batch is not None:
            self.on_batch(len(batch))
        if changed:  # one that changed no row (a heartbeat) commits even on a full disk
            self.last_error = None
        return None

    async def writable(self, timeout: float, room: int) -> bool:
        """Whether writes commit. Known while they succeed; after a failed one, the
        database's disk must have `room` bytes free (a tiny write still fits where
        the failed one grew the WAL) and a probe write must commit within `timeout`.
        Callers asking meanwhile share that probe."""
        if self.last_error is None:
            return True
        disk = await anyio.to_thread.run_sync(os.statvfs, self.path.parent)
        if disk.f_bavail * disk.f_frsize < room:
            return False
        probe = self._probe
        if probe is None:
            probe = self._probe = anyio.Event()

            def done(error: str | None) -> None:
                self._probe = None
                probe.set()

            try:
                self._send.send_nowait(Write([(PROBE_WRITE, [(time.time(),)]),
                                              (PROBE_UNDO, [()])], done, barrier=True))
            except (anyio.WouldBlock, anyio.ClosedResourceError):
                self._probe = None
                return False  # a writer that far behind is not ready either
        with anyio.move_on_after(timeout):
            await probe.wait()
        return self.last_error is None


async def _in_writer_thread(db: aiosqlite.Connection, batch: list[Write]) -> bool:
    """The batch's transaction as one call on the connection's own thread (aiosqlite's
    queue, in order with its other calls; it has no public call for this). A step
    awaited at a time needed an event loop turn between steps, and the loop is busy
    evaluating the next batch: the writer then waited for the loop, the loop for the
    writer, one at a time (on the firing benchmark both threads ran at once 6 % of the
    time). Returns whether it changed a row."""
    run = cast(Callable[..., Awaitable[bool]], db._execute)
    return await run(_transaction, db._conn, batch)


def _transaction(db: sqlite3.Connection, batch: list[Write]) -> bool:
    """BEGIN, the batch's statements (grouped as Write says), COMMIT; raises on failure,
    with the transaction left open for the caller to roll back."""
    changes = db.total_changes
    db.execute("BEGIN IMMEDIATE")
    grouped: dict[str, list[Sequence[Any]]] = {}
    for write in batch:
        if write.barrier:
            _execute(db, grouped.items())
            write.changes = _execute(db, _merge(write.statements))
            grouped = {}
        else:
            for statement, params in write.statements:
                grouped.setdefault(statement, []).extend(params)
    _execute(db, grouped.items())
    changed = db.total_changes != changes
    db.execute("COMMIT")
    return changed


def _execute(db: sqlite3.Connection,
             statements: Iterable[tuple[str, list[Sequence[Any]]]]) -> list[int]:
    """Apply the statements in order; returns the rows each one changed."""
    changed: list[int] = []
    for sql, rows in statements:
        before = db.total_changes
        if rows:
            if bulk.merges(sql):
                rows = bulk.merged_logs(rows)  # type: ignore[assignment]
            steps = bulk.statements(sql, rows)
            if steps is None:
                db.executemany(sql, rows)
            else:
                for step in steps:
                    db.execute(*step)
        changed.append(db.total_changes - before)
    return changed
