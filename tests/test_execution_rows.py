"""Execution rows are named: their fields are the executions table's columns, bound as
they are by the store and read back under the same names."""

from __future__ import annotations

import anyio
import msgspec

from runhook.core.events import RunMetrics
from runhook.core.executions import ExecutionRow, GroupedRow, execution_row, grouped_row
from runhook.store.database import Store, Write
from runhook.store.statements import INSERT_EXECUTION, INSERT_GROUPED

EVENT = RunMetrics(entity="acme", project="vision", run_id="r1", id="ev-1", values={"loss": 2.0})


def test_a_firing_row_names_every_value_it_binds():
    row = execution_row("ex_1", "loss-high", "project:acme/vision", "RUN_METRIC_THRESHOLD",
                        EVENT, "webhook", "hook", "PENDING", None, {"run_id": "r1"}, 5.0, "r1")
    assert isinstance(row, ExecutionRow)
    assert (row.id, row.automation, row.scope, row.event_kind) == \
        ("ex_1", "loss-high", "project:acme/vision", "RUN_METRIC_THRESHOLD")
    assert (row.event_type, row.event_id, row.action_kind, row.integration) == \
        ("run.metrics", "ev-1", "webhook", "hook")
    assert (row.state, row.reason, row.context, row.run_id) == \
        ("PENDING", None, '{"run_id":"r1"}', "r1")
    # PENDING: due at once; created and updated now.
    assert (row.created_at, row.updated_at, row.next_attempt_at) == (5.0, 5.0, 5.0)
    grouped = grouped_row(execution_row(
        "ex_2", "loss-high", "project:acme/vision", "RUN_METRIC_THRESHOLD", EVENT, "webhook",
        "hook", "GROUPED", "grouped into digest ex_9", {}, 6.0), "ex_9")
    assert isinstance(grouped, GroupedRow)
    assert (grouped.id, grouped.state, grouped.next_attempt_at, grouped.digest_id) == \
        ("ex_2", "GROUPED", None, "ex_9")
    assert len(row) == 15 and len(grouped) == 16  # INSERT_EXECUTION's and INSERT_GROUPED's
    # On the wire (cluster mode's history and work queue) a row is an array.
    assert msgspec.msgpack.decode(msgspec.msgpack.encode(grouped))[-1] == "ex_9"
    assert msgspec.msgpack.decode(msgspec.msgpack.encode(row), type=ExecutionRow) == row


async def test_the_store_binds_named_rows_and_reads_them_back_under_the_same_names(tmp_path):
    row = execution_row("ex_1", "loss-high", "project:acme/vision", "RUN_METRIC_THRESHOLD",
                        EVENT, "none", None, "FINISHED", "recorded only", {"k": 1}, 7.0, "r1")
    # The digest execution first (its id is the grouped row's digest_id).
    digest = execution_row("ex_9", "loss-high", "project:acme/vision", "RUN_METRIC_THRESHOLD",
                           EVENT, "none", None, "FINISHED", None, {}, 8.0)
    grouped = grouped_row(execution_row(
        "ex_2", "loss-high", "project:acme/vision", "RUN_METRIC_THRESHOLD", EVENT, "none",
        None, "GROUPED", "grouped into digest ex_9", {}, 7.5), "ex_9")
    second = grouped_row(execution_row(
        "ex_3", "loss-high", "project:acme/vision", "RUN_METRIC_THRESHOLD", EVENT, "none",
        None, "GROUPED", "grouped into digest ex_9", {}, 7.6), "ex_9")
    alone = execution_row("ex_4", "loss-low", "project:acme/vision", "RUN_METRIC_THRESHOLD",
                          EVENT, "webhook", "hook", "PENDING", None, {}, 9.0)
    store = Store(tmp_path / "r.db")
    await store.open()
    async with anyio.create_task_group() as tg:
        tg.start_soon(store.run)
        # Two rows a statement go as one JSON array (store/bulk.py), one alone by
        # executemany: both bind the named rows as they are.
        await store.commit(Write([(INSERT_EXECUTION, [row, digest]),
                                  (INSERT_GROUPED, [grouped, second])]))
        await store.commit(Write([(INSERT_EXECUTION, [alone])]))
        read = await store.execution("ex_1")
        read_grouped = await store.execution("ex_2")
        read_alone = await store.execution("ex_4")
        store.finish()
    await store.close()
    assert read is not None and read_grouped is not None
    for name in ExecutionRow._fields:
        expected = {"k": 1} if name == "context" else getattr(row, name)
        assert getattr(read, name) == expected, name
    assert (read.state, read.reason, read.next_attempt_at, read.attempts) == \
        ("FINISHED", "recorded only", None, 0)
    assert (read_grouped.state, read_grouped.digest_id, read_grouped.created_at) == \
        ("GROUPED", "ex_9", 7.5)
    assert read_alone is not None and \
        (read_alone.automation, read_alone.integration, read_alone.next_attempt_at) == \
        ("loss-low", "hook", 9.0)
