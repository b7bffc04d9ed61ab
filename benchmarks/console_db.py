"""A database of N executions for measuring the console (`/` and the execution list):
`python benchmarks/console_db.py PATH N`, then serve it or time the reads with --time."""

from __future__ import annotations

import argparse
import asyncio
import random
import sqlite3
import time

import msgspec

from runhook.store.database import Store
from runhook.store.reads import Filters

AUTOMATIONS = [f"automation-{i}" for i in range(10)]
STATES = ["FINISHED"] * 90 + ["SKIPPED"] * 7 + ["FAILED"] * 2 + ["PENDING"]


async def create(path: str, count: int, day_share: float = 0.5) -> None:
    store = Store(path)
    await store.open()  # applies the migrations
    await store.close()
    db = sqlite3.connect(path)
    now = time.time()
    rng = random.Random(7)
    rows = []
    for n in range(count):
        # The newest `day_share` of them in the last 24 h, the rest over 29 days before.
        age = rng.uniform(0, 86400) if n < count * day_share else rng.uniform(86400, 30 * 86400)
        created = now - age
        automation = AUTOMATIONS[n % len(AUTOMATIONS)]
        artifact = n % 2 == 0
        context = {"event_type": "ADD_ARTIFACT_ALIAS" if artifact else "RUN_STATE",
                   "automation_name": automation, "entity_name": "acme",
                   "execution_id": f"ex_{int(created * 1000):012x}{n:014x}"}
        if artifact:
            context["artifact_collection_name"] = f"collection-{n % 50}"
        else:
            context["run_id"] = f"run-{n % 5000}"
        state = STATES[n % len(STATES)]
        rows.append((context["execution_id"], automation, "project:acme/vision",
                     context["event_type"], "artifact.alias_added", None, "webhook", "ci", state,
                     None, msgspec.json.encode(context).decode(),
                     None if artifact else context["run_id"], created, created,
                     created if state == "PENDING" else None, 1))
        if len(rows) == 50_000:
            _insert(db, rows)
            rows = []
    _insert(db, rows)
    db.execute("ANALYZE")
    db.commit()
    db.close()


def _insert(db: sqlite3.Connection, rows: list[tuple[object, ...]]) -> None:
    db.executemany(
        "INSERT INTO executions (id, automation, scope, event_kind, event_type, event_id, "
        "action_kind, integration, state, reason, context, run_id, created_at, updated_at, "
        "next_attempt_at, attempts) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)
    db.commit()


async def time_reads(path: str) -> None:
    store = Store(path)
    await store.open()
    try:
        for name, filters in [("all", Filters()), ("state=FAILED", Filters(state="FAILED")),
                              ("automation", Filters(automation="automation-3")),
                              ("run", Filters(run_id="run-17")),
                              ("collection", Filters(collection="collection-8"))]:
            start = time.perf_counter()
            rows = await store.page(filters, 50)
            print(f"page {name:<14} {len(rows):>3} rows {1000 * (time.perf_counter() - start):7.1f} ms")
    finally:
        await store.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("path")
    parser.add_argument("count", type=int, nargs="?", default=2_000_000)
    parser.add_argument("--time", action="store_true", help="time the reads of an existing DB")
    args = parser.parse_args()
    if args.time:
        asyncio.run(time_reads(args.path))
    else:
        asyncio.run(create(args.path, args.count))


if __name__ == "__main__":
    main()
