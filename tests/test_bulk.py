"""The writer's few-step form of a batch leaves exactly what executemany leaves."""

from __future__ import annotations

import math
import sqlite3

import pytest

from runhook.store import bulk
from runhook.store.migrations import MIGRATIONS
from runhook.store.statements import (
    DISABLE_INTEGRATION,
    INSERT_ATTEMPT,
    INSERT_EVENT_ID,
    INSERT_EXECUTION,
    LOG_METRICS,
    REDELIVER,
    UPDATE_EXECUTION,
    UPSERT_FLAG,
    UPSERT_RUN,
)


def schema() -> sqlite3.Connection:
    db = sqlite3.connect(":memory:", isolation_level=None)
    for migration in MIGRATIONS:
        for sql in migration():
            db.execute(sql)
    return db


def execution(i: int, state: str = "PENDING") -> tuple[object, ...]:
    return (f"ex_{i}", "deploy", "project:acme/p", "CREATE_ARTIFACT", "artifact.created",
            None if i % 2 else f"id-{i}", "webhook", "ci", state, None,
            '{"alias": "caf\\u00e9 \\"q\\"", "n": 1}', None, 1795694174.0026317 + i,
            1795694174.0026317 + i, 1795694174.1 + i if state == "PENDING" else None)


TABLES = ["executions", "attempts", "event_ids", "trigger_state", "runs",
          "disabled_integrations", "metric_batches"]

# Each case: statements applied in order; later ones update what earlier ones wrote.
CASES = {
    "executions, attempts, updates": [
        (INSERT_EXECUTION, [execution(i) for i in range(5)]),
        (INSERT_ATTEMPT, [(f"ex_{i}", 1, 1.5 + i, 0.25, 200 if i else None,
                           None if i else "timed out after 15s", "ok" if i else None)
                          for i in range(5)]),
        (UPDATE_EXECUTION, [("FINISHED" if i else "PENDING", None if i else "retry",
                             2.0 + i, None if i else 7.5, f"ex_{i}") for i in range(5)]),
        (REDELIVER, [("redelivered", 9.0, 9.0, "ex_1"), ("redelivered", 9.0, 9.0, "ex_2")]),
    ],
    "an execution updated twice in one batch": [
        (INSERT_EXECUTION, [execution(1), execution(2)]),
        (UPDATE_EXECUTION, [("PENDING", "retry", 2.0, 7.0, "ex_1"),
                            ("FINISHED", None, 3.0, None, "ex_1"),
                            ("FINISHED", None, 3.0, None, "ex_2")]),
    ],
    "logged values keep their order (replay reads them by seq)": [
        (LOG_METRICS, [("project:acme/p", f'{{"loss":{i / 7!r}}}') for i in range(7)]),
    ],
    "upserts of one key: the later wins": [
        (UPSERT_RUN, [("project:acme/p", "r1", "a", "u", None, 1.0, None, None, None, None,
                       None),
                      ("project:acme/p", "r2", "b", "u", "running", 1.0, None, "g", '["t"]',
                       None, None),
                      ("project:acme/p", "r1", "a2", "u", "crashed", 2.0, 2.0, None, None,
                       '{"lr":0.1}', "no heartbeat for 5m")]),
        (UPSERT_FLAG, [("project:acme/p", "r1", "loss", "d1", 1, None),
                       ("project:acme/p", "r1", "loss", "d1", 0, 5.25),
                       ("project:acme/p", "r2", "loss", "d1", 1, 1e300)]),
        (INSERT_EVENT_ID, [("a", "s", 1.0), ("b", "s", 2.0), ("a", "s", 3.0)]),
        (DISABLE_INTEGRATION, [("ci", 1.0, "410 Gone"), ("slack", 2.0, "410")]),
    ],
    # JSON carries none of these; a multi-row VALUES binds them as executemany does.
    "blobs, non-finite floats and NULs in inserts": [
        (INSERT_EXECUTION, [(*execution(1)[:5], "id\x00x", *execution(1)[6:]),
                            execution(2)]),
        (UPSERT_FLAG, [("project:acme/p", "r1", "loss", "d", 1, math.inf),
                       ("project:acme/p", "r2", "loss", "d", 1, -math.inf),
                       ("project:acme/p", "r3", "loss", "d", 1, math.nan),
                       ("project:acme/p", "r4", "loss", "d", 1, 1.0)]),
        (LOG_METRICS, [("s", b"\x81"), ("s", b""), ("t", b"\x00\xff"), ("t", b"\x00")]),
        (INSERT_EVENT_ID, [("a\x00b", "s", 1.0), ("a", "s", 2.0)]),
    ],
}


def apply(db: sqlite3.Connection, statements: list, one_step: bool) -> dict[str, list]:
    for sql, rows in statements:
        steps = bulk.statements(sql, rows) if one_step else None
        if steps is None:
            db.executemany(sql, rows)
        else:
            for step in steps:
                db.execute(*step)
    return {t: _rows(db, t) for t in TABLES}


def _rows(db: sqlite3.Connection, table: str) -> list:
    """In insertion order where the table has one (rowid), else sorted."""
    try:
        return db.execute(f"SELECT * FROM {table} ORDER BY rowid").fetchall()
    except sqlite3.OperationalError:  # WITHOUT ROWID
        return sorted(db.execute(f"SELECT * FROM {table}").fetchall(), key=repr)


@pytest.mark.parametrize("chunk", [2, 500])  # 2: every case spans several steps, in order
@pytest.mark.parametrize("case", CASES)
def test_one_step_equals_executemany(case, chunk, monkeypatch):
    monkeypatch.setattr(bulk, "CHUNK", chunk)
    expected = apply(schema(), CASES[case], one_step=False)
    assert apply(schema(), CASES[case], one_step=True) == expected
    assert any(expected.values())


def test_hand_checked_rows_and_types():
    got = apply(schema(), CASES["executions, attempts, updates"], one_step=True)
    ex0 = got["executions"][0]
    assert ex0[0] == "ex_0" and ex0[8] == "PENDING" and ex0[9] == "retry"
    assert ex0[10] == '{"alias": "caf\\u00e9 \\"q\\"", "n": 1}'  # text kept byte for byte
    assert ex0[12] == 1795694174.0026317  # floats round-trip exactly
    assert got["executions"][1][8:10] == ("PENDING", "redelivered")
    # attempts: (id, execution_id, number, started_at, duration_ms, status, error, response)
    assert got["attempts"][0][5:7] == (None, "timed out after 15s")
    assert got["attempts"][1][1:6] == ("ex_1", 1, 2.5, 0.25, 200)
    assert [type(v) for v in got["attempts"][1][2:6]] == [int, float, float, int]


def test_rows_the_one_step_form_cannot_carry_use_executemany():
    assert bulk.statements(INSERT_EVENT_ID, [("a", "s", 1.0)]) is None  # one row: nothing to gain
    twice = [("FINISHED", None, 3.0, None, "ex_1"), ("PENDING", "r", 3.0, 4.0, "ex_1")]
    assert bulk.statements(UPDATE_EXECUTION, twice) is None
    assert bulk.json_form("DELETE FROM runs WHERE scope = ?") is None
    assert bulk.statements("DELETE FROM runs WHERE scope = ?", [("a",), ("b",)]) is None


@pytest.mark.parametrize("odd", [math.inf, -math.inf, math.nan])
def test_non_finite_floats_are_not_sent_as_json(odd):
    """JSON has no infinity or NaN (msgspec writes null): such UPDATE rows use executemany."""
    rows = [("FINISHED", None, 3.0, None, "ex_1"), ("PENDING", "r", 3.0, odd, "ex_2")]
    assert bulk.statements(UPDATE_EXECUTION, rows) is None


def test_inserts_of_what_json_cannot_carry_go_in_one_step_and_keep_their_values():
    """Blobs, ±inf, NaN and NULs (2 or 4 rows): one VALUES statement, stored as they were bound
    (SQLite stores NaN as NULL, as executemany does)."""
    case = dict(CASES["blobs, non-finite floats and NULs in inserts"])
    for sql, rows in case.items():
        steps = bulk.statements(sql, rows)
        assert steps is not None and len(steps) == 1, sql
    got = apply(schema(), list(case.items()), one_step=True)
    assert got["executions"][0][5] == "id\x00x"
    assert [row[5] for row in got["trigger_state"]] == [math.inf, -math.inf, None, 1.0]
    assert got["metric_batches"] == [(1, "s", b"\x81"), (2, "s", b""), (3, "t", b"\x00\xff"),
                                     (4, "t", b"\x00")]
    assert sorted(got["event_ids"]) == [("a", "s", 2.0), ("a\x00b", "s", 1.0)]


def test_insert_steps_have_few_shapes_and_bind_every_row_in_order(monkeypatch):
    """Full steps of CHUNK rows, the rest by powers of two (1,013 rows: 500, 500, 8, 4,
    1); never more parameters than SQLite allows (999: 66 rows of 15)."""
    rows = [execution(i) for i in range(1013)]
    steps = bulk.statements(INSERT_EXECUTION, rows)
    assert steps is not None
    assert [sql.count("),(") + 1 for sql, _ in steps] == [500, 500, 8, 4, 1]
    assert [v for _, params in steps for v in params] == [v for row in rows for v in row]
    assert len({sql for sql, _ in steps}) == 4
    monkeypatch.setattr(bulk, "VARIABLES", 999)
    steps = bulk.statements(INSERT_EXECUTION, rows[:200])
    assert steps is not None
    assert [len(params) for _, params in steps] == [66 * 15] * 3 + [2 * 15]


def test_a_batch_logs_one_blob_a_scope_holding_every_entry_in_order():
    """Metric log rows of one batch are merged per scope (one row stepped, not one a
    write); replay reads a scope's entries exactly as if they had stayed apart."""
    from runhook.core.events import RunMetrics
    from runhook.evaluate import metric_log

    def event(i: int) -> RunMetrics:
        return RunMetrics(entity="acme", project="p", run_id=f"r{i}", values={"loss": i * 0.1},
                          group="g" if i % 3 == 0 else None)

    rows = [("project:acme/a", metric_log.encode([event(i) for i in range(n)]))
            for n in (1, 15, 16, 40)]
    rows.insert(2, ("project:acme/b", metric_log.encode([event(7)])))
    merged = dict(bulk.merged_logs(rows))
    assert list(merged) == ["project:acme/a", "project:acme/b"]
    entries = [(e.run_id, e.values, e.group) for e in metric_log.decode(merged["project:acme/a"])]
    assert entries == [(e.run_id, e.values, e.group)
                       for n in (1, 15, 16, 40) for e in (event(i) for i in range(n))]
    assert [e.run_id for e in metric_log.decode(merged["project:acme/b"])] == ["r7"]
    many = bulk.merged_logs([("s", metric_log.encode([event(1)] * 40000))] * 2)
    assert len(metric_log.decode(many[0][1])) == 80000  # past 65,535: a 32-bit header
    assert bulk.merges(LOG_METRICS)
