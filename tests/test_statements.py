"""Statements that say their conflict rule: an execution inserted twice fails the
write as written, and is left as it was under its `if_new` rule (cluster mode)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import anyio
import pytest

from runhook.core import executions
from runhook.store.database import Store, Write, WriteFailed
from runhook.store.statements import INSERT_EXECUTION, INSERT_GROUPED


async def test_an_execution_made_twice_fails_as_written_and_stays_as_it_was_if_new(
        tmp_path: Path) -> None:
    store = Store(tmp_path / "r.db")
    await store.open()
    try:
        async with anyio.create_task_group() as tg:
            await tg.start(store.run)
            first = executions.test_row("e1", "ci", "webhook", {"n": 1}, 100.0)
            again = executions.test_row("e1", "ci", "webhook", {"n": 2}, 200.0)
            await store.commit(Write([(INSERT_EXECUTION, [first])]))
            with pytest.raises(WriteFailed, match="UNIQUE constraint failed: executions.id"):
                await store.commit(Write([(INSERT_EXECUTION, [again])]))
            await store.commit(Write([(INSERT_EXECUTION.if_new, [again])]))
            grouped = (*again, "d1")
            await store.commit(Write([(INSERT_GROUPED.if_new, [grouped])]))
            store.finish()
    finally:
        await store.close()
    db = sqlite3.connect(tmp_path / "r.db")
    # The first row, untouched: its context, its creation time, no digest.
    assert db.execute("SELECT id, context, created_at, digest_id FROM executions").fetchall() \
        == [("e1", '{"n":1}', 100.0, None)]


def test_each_rule_is_its_own_statement_text() -> None:
    for insert in (INSERT_EXECUTION, INSERT_GROUPED):
        assert insert.startswith("INSERT INTO executions (")
        assert insert.if_new == "INSERT OR IGNORE" + insert.removeprefix("INSERT")
