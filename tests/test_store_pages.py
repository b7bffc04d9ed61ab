"""The console's reads: keyset pages that neither skip nor repeat rows (ties on the
time included), each filter answered from an index led by it, bounded counts."""

from __future__ import annotations

import sqlite3

import msgspec
import pytest

from runhook.store.database import Store
from runhook.store.reads import COLLECTION, Filters


def _row(n: int, created: float, **kw) -> tuple:
    context = {"artifact_collection_name": kw["collection"]} if kw.get("collection") else {}
    return (f"ex_{n:04d}", kw.get("automation", "a"), "project:e/p", "CREATE_ARTIFACT",
            "artifact.created", None, "none", None, kw.get("state", "FINISHED"), None,
            msgspec.json.encode(context).decode(), kw.get("run_id"), created, created, None, 0)


@pytest.fixture
async def store(tmp_path):
    path = str(tmp_path / "r.db")
    first = Store(path)
    await first.open()  # the migrations
    await first.close()
    db = sqlite3.connect(path)
    # 30 executions, three to each time: a page boundary falls inside a tie.
    rows = [_row(n, 1000.0 + n // 3, state="FAILED" if n % 5 == 0 else "FINISHED",
                 run_id=f"r{n % 2}", collection="even" if n % 2 == 0 else None,
                 automation="b" if n % 3 == 0 else "a") for n in range(30)]
    db.executemany("INSERT INTO executions (id, automation, scope, event_kind, event_type, "
                   "event_id, action_kind, integration, state, reason, context, run_id, "
                   "created_at, updated_at, next_attempt_at, attempts) "
                   "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)
    db.commit()
    db.close()
    opened = Store(path)
    await opened.open()
    yield opened
    await opened.close()


async def _walk(store: Store, filters: Filters, size: int) -> list[str]:
    seen: list[str] = []
    before = None
    while True:
        page = await store.page(filters, size, before=before)
        seen += [e.id for e in page]
        if len(page) < size:
            return seen
        before = (page[-1].created_at, page[-1].id)


@pytest.mark.parametrize("size", [1, 2, 4, 7, 30])
async def test_pages_cover_every_row_once_newest_first(store, size):
    assert await _walk(store, Filters(), size) == [f"ex_{n:04d}" for n in range(29, -1, -1)]


async def test_pages_walk_back_up(store):
    page = await store.page(Filters(), 4, before=(1005.0, "ex_0016"))
    assert [e.id for e in page] == ["ex_0015", "ex_0014", "ex_0013", "ex_0012"]
    above = await store.page(Filters(), 4, after=(page[0].created_at, page[0].id))
    assert [e.id for e in above] == ["ex_0019", "ex_0018", "ex_0017", "ex_0016"]


async def test_filters_combine(store):
    failed = await _walk(store, Filters(state="FAILED"), 2)
    assert failed == ["ex_0025", "ex_0020", "ex_0015", "ex_0010", "ex_0005", "ex_0000"]
    mine = await _walk(store, Filters(automation="b", state="FAILED", run_id="r0"), 3)
    assert mine == ["ex_0000"]  # n % 3 == 0, n % 5 == 0, n even: 0 (30 is out of range)
    even = await _walk(store, Filters(collection="even", since=1008.0, until=1009.0), 5)
    assert even == ["ex_0026", "ex_0024"]  # created 1008: n = 24, 25, 26


async def test_counts_stop_at_their_cap(store):
    assert await store.counts("a", 0.0, 1000) == {"FINISHED": 16, "FAILED": 4}
    capped = await store.counts("a", 0.0, 5)
    assert sum(capped.values()) == 5


@pytest.mark.parametrize("filters, index", [
    (Filters(state="FAILED"), "executions_by_state"),
    (Filters(state="FINISHED"), "executions_by_created"),  # outside the partial index
    (Filters(automation="a"), "executions_by_automation"),
    (Filters(run_id="r1"), "executions_by_run"),
    (Filters(collection="even"), "executions_by_created"),  # no index of its own: 0008
    (Filters(since=1.0, until=2.0), "executions_by_created"),
    (Filters(), "executions_by_created"),
])
async def test_every_filter_reads_an_index(store, filters, index):
    where, params = filters.sql()
    sql = "SELECT id FROM executions" + (" WHERE " + " AND ".join(where) if where else "") + \
        " ORDER BY created_at DESC, id DESC LIMIT 50"
    plan = " | ".join(await store.plan(sql, params))
    assert f"INDEX {index}" in plan, plan
    assert COLLECTION in sql or filters.collection is None
