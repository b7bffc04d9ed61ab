"""The store: migrations recorded, group commit, and a failed batch that leaves the writer alive."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from test_socket import GOOD, RECORD

from runhook.core.executions import STATES
from runhook.store.database import Store, Write
from runhook.store.statements import INSERT_EVENT_ID


async def test_migrations_are_recorded_and_not_reapplied(tmp_path):
    store = Store(tmp_path / "r.db")
    await store.open()
    await store.close()
    store = Store(tmp_path / "r.db")
    await store.open()  # a second open applies nothing and does not fail
    await store.close()
    db = sqlite3.connect(tmp_path / "r.db")
    assert [r[0] for r in db.execute("SELECT name FROM schema_migrations ORDER BY name")] == [
        "0001_executions", "0002_run_state", "0003_delivery_control",
        "0004_status_counts", "0005_event_ids_per_scope", "0006_metric_batches",
        "0007_silences", "0008_console_filters", "0009_run_health",
        "0010_source_versions", "0011_digests", "0012_artifact_cooldowns",
        "0013_artifact_metadata", "0014_source_cursors"]
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_the_executions_table_allows_exactly_the_states_the_code_knows(tmp_path):
    """The migration spells the states out (migrations are history, never edited);
    the code's one list must stay the same four."""
    store = Store(tmp_path / "r.db")
    await store.open()
    await store.close()
    db = sqlite3.connect(tmp_path / "r.db")
    [sql] = db.execute("SELECT sql FROM sqlite_master WHERE name = 'executions'").fetchone()
    check = re.search(r"CHECK \(state IN \(([^)]*)\)\)", sql)
    assert check is not None
    assert tuple(s.strip("' ") for s in check.group(1).split(",")) == STATES


async def test_group_commit_and_failed_batch(tmp_path):
    store = Store(tmp_path / "r.db")
    await store.open()
    outcomes: list[str | None] = []
    done = anyio.Event()

    def record(error: str | None) -> None:
        outcomes.append(error)
        if len(outcomes) == 4:
            done.set()

    async with anyio.create_task_group() as tg:
        # Queue everything before the writer runs, so all four land in one batch.
        await store.submit(Write([(INSERT_EVENT_ID, [("a", "s", 1.0)])], record))
        await store.submit(Write([(INSERT_EVENT_ID, [("b", "s", 2.0)])], record))
        await store.submit(Write([(INSERT_EVENT_ID, [("c", "s", 3.0)])], record))
        await store.submit(Write([("INSERT INTO no_such_table VALUES (?)", [(1,)])], record))
        tg.start_soon(store.run)
        await done.wait()
        # The batch failed, then each write was tried alone: the bad one fails by
        # itself, the others commit, every caller told its own outcome.
        assert outcomes[:3] == [None, None, None]
        assert outcomes[3] is not None and "no_such_table" in outcomes[3]
        assert await store.seen_event_ids(["a", "b", "c"], 0) == {
            ("a", "s"), ("b", "s"), ("c", "s")}
        # The writer is still alive and commits the next write.
        committed = anyio.Event()
        await store.submit(Write([(INSERT_EVENT_ID, [("d", "s", 4.0)])],
                                 lambda e: committed.set() if e is None else None))
        await committed.wait()
        assert await store.seen_event_ids(["d"], 0) == {("d", "s")}
        assert await store.seen_event_ids(["d"], 5.0) == set()  # older than the horizon
        store.finish()
    assert store.commits == 4  # a, b and c alone, then d
    await store.close()


async def test_purge_keeps_pending_and_recent(tmp_path):
    from runhook.store.statements import (
        INSERT_ATTEMPT,
        INSERT_EXECUTION,
        PURGE_ATTEMPTS,
        PURGE_EVENT_IDS,
        PURGE_EXECUTIONS,
    )

    def row(execution_id: str, state: str, created: float) -> tuple:
        return (execution_id, "a", "project:e/p", "CREATE_ARTIFACT", "artifact.created", None,
                "none", None, state, None, "{}", None, created, created, None)

    store = Store(tmp_path / "r.db")
    await store.open()
    done = anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(store.run)
        await store.submit(Write([
            (INSERT_EXECUTION, [row("old-done", "FINISHED", 100.0), row("old-pending", "PENDING", 100.0),
                                row("new-done", "FAILED", 5000.0)]),
            (INSERT_ATTEMPT, [("old-done", 1, 100.0, 1.0, 200, None, None),
                              ("new-done", 1, 5000.0, 1.0, 500, None, None)]),
            (INSERT_EVENT_ID, [("old", "s", 10.0), ("new", "s", 4000.0)]),
        ]))
        await store.submit(Write([
            (PURGE_EVENT_IDS, [(1000.0, 100)]),
            (PURGE_ATTEMPTS, [(1000.0, 100)]),
            (PURGE_EXECUTIONS, [(1000.0, 100)]),
        ], lambda error: done.set(), barrier=True))
        await done.wait()
        assert sorted(e.id for e in await store.history(limit=10)) == ["new-done", "old-pending"]
        assert await store.attempts("old-done") == []
        assert len(await store.attempts("new-done")) == 1
        assert await store.seen_event_ids(["old", "new"], 0) == {("new", "s")}
        store.finish()
    await store.close()


async def test_ids_accepted_before_ids_were_kept_per_scope_stand_for_every_scope(tmp_path):
    from runhook.store import migrations

    db = sqlite3.connect(tmp_path / "r.db")
    db.execute("CREATE TABLE schema_migrations (name TEXT PRIMARY KEY, applied_at REAL NOT NULL)")
    for migration in migrations.MIGRATIONS[:4]:
        for statement in migration():
            db.execute(statement)
        db.execute("INSERT INTO schema_migrations VALUES (?, 0)", (migration.__name__[1:],))
    db.execute("INSERT INTO event_ids (id, received_at) VALUES ('old', 5.0)")
    db.commit()
    db.close()
    store = Store(tmp_path / "r.db")
    await store.open()
    assert await store.seen_event_ids(["old"], 0) == {("old", "*")}
    await store.close()


async def test_recent_ids_memory_is_bounded_and_the_database_remembers(tmp_path):
    from runhook.core.acks import Ticket
    from runhook.ingest.idempotency import Claim, RecentIds

    store = Store(tmp_path / "r.db")
    await store.open()
    recent = RecentIds(store, memory=2)
    ticket = Ticket(asyncio.get_running_loop().create_future(), 1)
    async with anyio.create_task_group() as tg:
        tg.start_soon(store.run)
        for i, event_id in enumerate(["a", "b", "c"]):
            key = (event_id, "s")
            recent.claim(key, Claim(ticket, i, key), 100.0 + i)
            assert recent.pending(key, 0) is not None  # a claim is known before its commit
            assert not recent.committed_here(key, 0)
            committed = anyio.Event()
            await store.submit(Write([(INSERT_EVENT_ID, [(event_id, "s", 100.0 + i)])],
                                     lambda e, done=committed: done.set()))
            await committed.wait()
            recent.committed([key])
            assert recent.pending(key, 0) is None and recent.committed_here(key, 0)
        assert len(recent) == 2 and not recent.committed_here(("a", "s"), 0)  # evicted...
        # ...not forgotten: the database answers, for every scope of the id.
        assert await recent.accepted([("a", "s"), ("b", "s"), ("x", "s")], 0) == {
            ("a", "s"), ("b", "s")}
        assert await recent.accepted([("a", "s"), ("c", "s")], 101.5) == {("c", "s")}
        assert await recent.accepted([("a", "other")], 0) == {("a", "s")}
        recent.claim(("y", "s"), Claim(ticket, 9, ("y", "s")), 200.0)
        recent.release([("y", "s")])  # a refused line: the id may be evaluated again
        assert recent.pending(("y", "s"), 0) is None
        store.finish()
    await store.close()


async def test_status_summary_counts_the_last_day_and_finds_the_latest(tmp_path):
    from runhook.store.statements import INSERT_EXECUTION

    def row(execution_id: str, automation: str, state: str, created: float) -> tuple:
        return (execution_id, automation, "project:e/p", "CREATE_ARTIFACT", "artifact.created",
                None, "none", None, state, None, "{}", None, created, created, None)

    store = Store(tmp_path / "r.db")
    await store.open()
    done = anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(store.run)
        await store.submit(Write([(INSERT_EXECUTION, [
            row("d1", "deploy", "FINISHED", 50.0),    # before `since`: not counted
            row("d2", "deploy", "FINISHED", 150.0),
            row("d3", "deploy", "FAILED", 160.0),
            row("d4", "deploy", "FINISHED", 170.0),
            row("d5", "deploy", "FAILED", 170.0),     # same time as d4, inserted later
            row("e1", "eval", "FAILED", 10.0),        # only old executions
        ])], lambda error: done.set()))
        await done.wait()
        summary = await store.summary(["deploy", "eval", "never-fired"], since=100.0)
        store.finish()
    await store.close()
    assert summary["deploy"]["counts"] == {"FINISHED": 2, "FAILED": 2}
    # d5, not d4: the later insert, though FAILED sorts before FINISHED in the index
    assert summary["deploy"]["last"] == {"id": "d5", "state": "FAILED", "created_at": 170.0}
    assert summary["eval"] == {"counts": {}, "last": {"id": "e1", "state": "FAILED",
                                                      "created_at": 10.0}}
    assert summary["never-fired"] == {"counts": {}, "last": None}


async def test_a_long_query_does_not_hold_up_the_daemons_own_reads(tmp_path):
    """A person's query (held open inside SQLite here by a function that waits)
    must not delay idempotency lookups or delivery scans, which ingest and
    delivery wait on."""
    import threading

    store = Store(tmp_path / "r.db")
    await store.open()
    release = threading.Event()
    entered = threading.Event()

    def hold() -> int:  # runs in the queries connection's thread
        entered.set()
        release.wait(30)
        return 1

    await store._queries.create_function("hold", 0, hold)
    slow = asyncio.ensure_future(store._query("SELECT hold()"))
    try:
        await anyio.to_thread.run_sync(entered.wait, 30)
        with anyio.fail_after(10):  # a bound, not a timing: without the split this hangs
            assert await store.seen_event_ids(["x"], 0) == set()
            assert await store.due("ci", 1e12, 10) == ([], 0)
        assert not slow.done()  # the long query was still running meanwhile
    finally:
        release.set()
        assert await slow == [(1,)]
        await store.close()


@contextlib.contextmanager
def umask(mask: int) -> Iterator[None]:
    """The usual umask (0o022 makes files 0644), whatever the test runner's is."""
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def modes(directory: Path, *names: str) -> dict[str, int]:
    return {name: stat.S_IMODE((directory / name).stat().st_mode) for name in names}


async def test_database_wal_and_shm_are_created_private(tmp_path):
    with umask(0o022):
        store = Store(tmp_path / "state" / "r.db")
        await store.open()
    try:
        assert modes(tmp_path / "state", "r.db", "r.db-wal", "r.db-shm") == {
            "r.db": 0o600, "r.db-wal": 0o600, "r.db-shm": 0o600}
    finally:
        await store.close()


async def test_an_existing_world_readable_database_is_closed_to_others(tmp_path):
    sqlite3.connect(tmp_path / "r.db").close()
    os.chmod(tmp_path / "r.db", 0o644)
    store = Store(tmp_path / "r.db")
    await store.open()
    await store.close()
    assert modes(tmp_path, "r.db") == {"r.db": 0o640}  # the group is the operator's choice


async def test_the_daemon_keeps_its_database_private_and_its_socket_mode(start_daemon):
    with umask(0o022):
        daemon = await start_daemon(RECORD)
    async with daemon.client() as client:
        assert await client.send(GOOD) == {"ok": True}
    assert modes(daemon.directory, "runhook.db", "runhook.db-wal", "runhook.db-shm",
                 "ev.sock") == {"runhook.db": 0o600, "runhook.db-wal": 0o600,
                                "runhook.db-shm": 0o600, "ev.sock": 0o660}


async def test_commit_returns_once_committed_and_raises_why_not(tmp_path):
    from runhook.store.database import WriteFailed

    store = Store(tmp_path / "c.db")
    await store.open()
    async with anyio.create_task_group() as tg:
        tg.start_soon(store.run)
        await store.commit(Write([(INSERT_EVENT_ID, [("a", "s", 1.0)])]))
        assert await store.seen_event_ids(["a"], 0) == {("a", "s")}  # visible on return
        with pytest.raises(WriteFailed, match="no such table: nowhere"):
            await store.commit(Write([("INSERT INTO nowhere VALUES (?)", [(1,)])]))
        store.finish()
    await store.close()


async def test_a_snapshot_open_across_an_await_does_not_hold_other_reads_in_the_past(
        tmp_path, monkeypatch):
    """run_states reads several scopes in one read transaction, across awaits. The
    daemon's other reads in between (idempotency lookups, delivery scans) must see
    what committed meanwhile, not that transaction's snapshot."""
    from runhook.store.statements import UPSERT_RUN

    def run(scope: str, run_id: str) -> tuple:
        return (scope, run_id, run_id, "u", "running", 1.0, None, None, "{}", "{}", None)

    store = Store(tmp_path / "r.db")
    await store.open()
    paused, resume = anyio.Event(), anyio.Event()
    fetch = Store._fetch

    async def pausing(self, sql, params=(), *args, **kwargs):
        # The snapshot is open (project:a was read in it); hold it before project:b.
        if "FROM runs WHERE scope" in sql and tuple(params) == ("project:b",):
            paused.set()
            await resume.wait()
        return await fetch(self, sql, params, *args, **kwargs)

    monkeypatch.setattr(Store, "_fetch", pausing)
    states = {}

    async def snapshot() -> None:
        states.update(await store.run_states(["project:a", "project:b"]))

    async with anyio.create_task_group() as tg:
        tg.start_soon(store.run)
        await store.commit(Write([(UPSERT_RUN, [run("project:a", "r1")])]))
        tg.start_soon(snapshot)
        await paused.wait()
        await store.commit(Write([(UPSERT_RUN, [run("project:b", "r2")])]))
        # Another task's read after the commit sees it: project:b has a run now.
        assert await store.project_scopes() == ["project:a", "project:b"]
        resume.set()
        store.finish()
    # The snapshot itself stayed one instant: project:b had no run when it began.
    assert [r[0] for r in states["project:a"]["runs"]] == ["r1"]
    assert states["project:b"]["runs"] == []
    await store.close()


async def test_a_batch_is_one_call_on_the_writer_thread(tmp_path):
    """The event loop hands the writer's thread a whole batch at once (BEGIN, every
    statement, a barrier's in its place, COMMIT), not a loop turn per step: while the
    loop evaluated, each step had waited for it."""
    store = Store(tmp_path / "r.db")
    await store.open()
    writer = store._writer
    assert writer is not None
    calls: list[object] = []
    execute = writer._execute

    async def counted(fn, *args, **kwargs):
        calls.append(fn)
        return await execute(fn, *args, **kwargs)

    writer._execute = counted  # type: ignore[method-assign]
    outcomes: list[str | None] = []
    done = anyio.Event()

    def record(error: str | None) -> None:
        outcomes.append(error)
        if len(outcomes) == 3:
            done.set()

    clear = Write([("DELETE FROM event_ids WHERE scope = ?", [("t",)])], record, barrier=True)
    async with anyio.create_task_group() as tg:
        # Queued before the writer runs: one batch. 1,200 rows are three steps.
        await store.submit(Write([(INSERT_EVENT_ID, [(f"e{i}", "s", 1.0) for i in range(1200)]
                                   + [("x", "t", 1.0), ("y", "t", 1.0), ("z", "t", 1.0)])],
                                 record))
        await store.submit(clear)
        await store.submit(Write([(INSERT_EVENT_ID, [("w", "t", 2.0), ("v", "t", 2.0)])],
                                 record))
        tg.start_soon(store.run)
        await done.wait()
        applied = len(calls)
        store.finish()
    await store.close()
    assert outcomes == [None, None, None] and store.commits == 1
    assert applied == 1
    assert clear.changes == [3]  # x, y and z: the rows before the barrier
    db = sqlite3.connect(tmp_path / "r.db")
    assert db.execute("SELECT count(*) FROM event_ids WHERE scope = 's'").fetchone() == (1200,)
    assert sorted(db.execute("SELECT id FROM event_ids WHERE scope = 't'")) == [("v",), ("w",)]
