"""The store: migrations recorded, group commit, and a failed batch that leaves the writer alive."""

from __future__ import annotations

import sqlite3

import anyio

from runhook.store import INSERT_EVENT_ID, Store, Write


async def test_migrations_are_recorded_and_not_reapplied(tmp_path):
    store = Store(tmp_path / "r.db")
    await store.open()
    await store.close()
    store = Store(tmp_path / "r.db")
    await store.open()  # a second open applies nothing and does not fail
    await store.close()
    db = sqlite3.connect(tmp_path / "r.db")
    assert [r[0] for r in db.execute("SELECT name FROM schema_migrations ORDER BY name")] == [
        "0001_executions", "0002_run_state", "0003_delivery_control"]
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


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
        await store.submit(Write([(INSERT_EVENT_ID, [("a", 1.0)])], record))
        await store.submit(Write([(INSERT_EVENT_ID, [("b", 2.0)])], record))
        await store.submit(Write([(INSERT_EVENT_ID, [("c", 3.0)])], record))
        await store.submit(Write([("INSERT INTO no_such_table VALUES (?)", [(1,)])], record))
        tg.start_soon(store.run)
        await done.wait()
        # The whole batch failed together: nothing half-written, every caller told.
        assert len(outcomes) == 4 and all(o and "no_such_table" in o for o in outcomes)
        assert await store.recent_event_ids(0) == {}
        # The writer is still alive and commits the next write.
        committed = anyio.Event()
        await store.submit(Write([(INSERT_EVENT_ID, [("d", 4.0)])],
                                 lambda e: committed.set() if e is None else None))
        await committed.wait()
        assert await store.recent_event_ids(0) == {"d": 4.0}
        store.finish()
    assert store.commits == 1
    await store.close()
