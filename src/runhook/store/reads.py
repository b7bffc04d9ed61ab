"""The store's reads: the daemon's own (idempotency lookups, delivery scans,
restores) on one connection, people's queries (history, status) on another, so
neither waits behind the other. Read-only; the writer is in database.py."""

from __future__ import annotations

from collections.abc import Container, Sequence
from pathlib import Path
from typing import Any

import aiosqlite
import anyio
import msgspec

from runhook.core.executions import ExecutionRow
from runhook.store.rows import (
    _ATTEMPT_COLUMNS,
    _COLUMNS,
    Attempt,
    Due,
    Execution,
    _attempt,
    _context,
    _execution,
)

# Where an execution's collection is (no index: see migration 0008).
COLLECTION = "json_extract(context, '$.artifact_collection_name')"
RUN_NAME = "json_extract(context, '$.run_name')"
# A run's group, or the group a GROUP_FINISHED execution is about.
GROUP = "coalesce(json_extract(context, '$.run_group'), json_extract(context, '$.group'))"


def _starts(column: str) -> str:
    """`column` starts with the parameter (given twice: its length, then it).
    substr, not LIKE or GLOB: a `%`, `_` or `*` in a name is itself."""
    return f"substr({column}, 1, ?) = ?"


class Filters(msgspec.Struct, frozen=True, kw_only=True):
    """What the console's execution list is narrowed by; None is no filter."""

    automation: str | None = None
    state: str | None = None
    run_id: str | None = None
    # Prefixes, as people type them: `run` of the run's id or its name (the list
    # shows names; ids may be random hex), `collection` and `group` of theirs.
    # No index serves them: a rare one walks the history down to a page's rows.
    run: str | None = None
    collection: str | None = None
    group: str | None = None
    since: float | None = None
    until: float | None = None

    def sql(self) -> tuple[list[str], list[Any]]:
        where: list[str] = []
        params: list[Any] = []
        for clause, value in (("automation = ?", self.automation), ("state = ?", self.state),
                              ("run_id = ?", self.run_id),
                              ("created_at >= ?", self.since), ("created_at < ?", self.until)):
            if value is not None:
                where.append(clause)
                params.append(value)
        if self.run is not None:
            where.append(f"({_starts('run_id')} OR {_starts(RUN_NAME)})")
            params += [len(self.run), self.run] * 2
        for column, prefix in ((COLLECTION, self.collection), (GROUP, self.group)):
            if prefix is not None:
                where.append(_starts(column))
                params += [len(prefix), prefix]
        if self.state is not None and self.state != "FINISHED":
            # Spelt out so SQLite sees the query inside the partial state index.
            where.append("state != 'FINISHED'")
        return where, params


# INSERT_GROUPED's columns but the last (digest_id), read from `executions AS e`.
EXECUTION_COLUMNS = ", ".join(f"e.{c}" for c in ExecutionRow._fields)


class Reads:
    """Mixed into Store, which opens the two connections."""

    path: Path
    _reader: aiosqlite.Connection | None
    _queries: aiosqlite.Connection | None
    # A read transaction spanning awaits has a connection of its own: on the shared
    # reader, every read of other tasks in between would see its stale snapshot.
    _snapshots: aiosqlite.Connection | None
    _snapshot_lock: anyio.Lock

    # Reads: `_fetch` for the daemon's own, `_query` for what people ask.

    async def _fetch(self, sql: str, params: Sequence[Any] = (), people: bool = False,
                     db: aiosqlite.Connection | None = None) -> list[Any]:
        db = db or (self._queries if people else self._reader)
        assert db is not None
        async with db.execute(sql, params) as cursor:
            return list(await cursor.fetchall())

    async def _query(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        return await self._fetch(sql, params, people=True)

    async def history(self, automation: str | None = None, state: str | None = None,
                      limit: int = 50, since: float | None = None,
                      before: tuple[float, str] | None = None) -> list[Execution]:
        """The newest executions first; `before` (created_at, id) continues a listing
        below the last row of its previous page."""
        where: list[str] = []
        params: list[Any] = []
        for clause, value in (("automation = ?", automation), ("state = ?", state),
                              ("created_at >= ?", since)):
            if value is not None:
                where.append(clause)
                params.append(value)
        if before is not None:
            where.append("created_at <= ? AND (created_at < ? OR id < ?)")
            params += [before[0], before[0], before[1]]
        sql = f"SELECT {_COLUMNS} FROM executions"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created_at DESC, id DESC LIMIT ?"
        rows = await self._query(sql, [*params, limit])
        return [_execution(row) for row in rows]

    async def page(self, filters: Filters, limit: int,
                   before: tuple[float, str] | None = None,
                   after: tuple[float, str] | None = None) -> list[Execution]:
        """One page of the console's execution list, newest first: keyset paging,
        `before` the last row of the page above, `after` the first of the page below.
        Each filter has an index led by it, so a page costs its rows, not the table."""
        where, params = filters.sql()
        order = "DESC"
        if before is not None:
            where.append("created_at <= ? AND (created_at < ? OR id < ?)")
            params += [before[0], before[0], before[1]]
        elif after is not None:
            where.append("created_at >= ? AND (created_at > ? OR id > ?)")
            params += [after[0], after[0], after[1]]
            order = "ASC"
        sql = f"SELECT {_COLUMNS} FROM executions"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += f" ORDER BY created_at {order}, id {order} LIMIT ?"
        rows = [_execution(row) for row in await self._query(sql, [*params, limit])]
        return rows[::-1] if order == "ASC" else rows

    async def counts(self, automation: str, since: float, cap: int) -> dict[str, int]:
        """An automation's executions by state since `since`, counting at most the
        newest `cap` (a page must not walk a million index entries to count them);
        a total equal to `cap` means "at least"."""
        rows = await self._query(
            "SELECT state, count(*) FROM (SELECT state FROM executions WHERE automation = ? "
            "AND created_at >= ? ORDER BY created_at DESC LIMIT ?) GROUP BY state",
            (automation, since, cap))
        return {state: count for state, count in rows}

    async def per_hour(self, automation: str, since: float, cap: int) -> dict[int, int]:
        """An automation's executions since `since` per hour (created_at // 3600),
        counting at most the newest `cap`, as `counts` does."""
        rows = await self._query(
            "SELECT CAST(created_at / 3600 AS INTEGER), count(*) FROM (SELECT created_at "
            "FROM executions WHERE automation = ? AND created_at >= ? "
            "ORDER BY created_at DESC LIMIT ?) GROUP BY 1", (automation, since, cap))
        return {hour: count for hour, count in rows}

    async def has_run(self, run_id: str) -> bool:
        """Whether an execution names this run id (one probe of the run index)."""
        return bool(await self._query(
            "SELECT 1 FROM executions WHERE run_id = ? LIMIT 1", (run_id,)))

    async def latest(self, automation: str) -> Execution | None:
        rows = await self._query(
            f"SELECT {_COLUMNS} FROM executions WHERE automation = ? "
            "ORDER BY created_at DESC, id DESC LIMIT 1", (automation,))
        return _execution(rows[0]) if rows else None

    async def plan(self, sql: str, params: Sequence[Any]) -> list[str]:
        """EXPLAIN QUERY PLAN's details, for tests that hold a query to its index."""
        return [row[3] for row in await self._query("EXPLAIN QUERY PLAN " + sql, params)]

    async def execution(self, execution_id: str) -> Execution | None:
        rows = await self._query(f"SELECT {_COLUMNS} FROM executions WHERE id = ?",
                                 (execution_id,))
        return _execution(rows[0]) if rows else None

    async def attempts(self, execution_id: str) -> list[Attempt]:
        rows = await self._query(
            f"SELECT {_ATTEMPT_COLUMNS} FROM attempts "
            "WHERE execution_id = ? ORDER BY number", (execution_id,))
        return [_attempt(row) for row in rows]

    async def silences(self, since: float) -> list[tuple[Any, ...]]:
        """Silences that end after `since`: (id, automation, run_name, run_group,
        collection, comment, created_at, ends_at, expired_at), oldest first."""
        return await self._fetch(
            "SELECT id, automation, run_name, run_group, collection, comment, created_at, "
            "ends_at, expired_at FROM silences WHERE ends_at >= ? ORDER BY created_at, id",
            (since,))

    async def due(self, integration: str, now: float, limit: int,
                  skip: Container[str] = ()) -> tuple[list[Due], int]:
        """PENDING executions due by `now`, less those in `skip` (already in hand),
        and how many rows the query returned. Only what a sender needs is read, and
        only the kept rows' contexts are decoded."""
        rows = await self._fetch(
            "SELECT id, automation, context, attempts, created_at, round_start FROM executions "
            "WHERE state = 'PENDING' AND integration = ? AND next_attempt_at <= ? "
            "ORDER BY next_attempt_at LIMIT ?", (integration, now, limit))
        return [Due(id_, automation, _context(context), attempts, created_at, round_start)
                for id_, automation, context, attempts, created_at, round_start in rows
                if id_ not in skip], len(rows)

    async def next_due_after(self, integration: str, now: float) -> float | None:
        rows = await self._fetch(
            "SELECT MIN(next_attempt_at) FROM executions WHERE state = 'PENDING' "
            "AND integration = ? AND next_attempt_at > ?", (integration, now))
        return rows[0][0] if rows else None

    async def run_state(self, scope: str,
                        db: aiosqlite.Connection | None = None) -> dict[str, list[Any]]:
        """Everything a scope actor restores on start, each list in write order
        (read on `db`, by default the daemon's reader)."""
        return {
            "runs": await self._fetch(
                "SELECT run_id, run_name, user, state, last_seen, ended_at, grp, tags, config, "
                "reason FROM runs WHERE scope = ?", (scope,), db=db),
            "windows": await self._fetch(
                "SELECT run_id, metric, size, data FROM windows WHERE scope = ?", (scope,), db=db),
            "log": await self._fetch(
                "SELECT run_id, run_name, user, data FROM metric_log WHERE scope = ? "
                "ORDER BY seq", (scope,), db=db),
            "batches": await self._fetch(
                "SELECT data FROM metric_batches WHERE scope = ? ORDER BY seq", (scope,), db=db),
            "flags": await self._fetch(
                "SELECT run_id, automation, digest, active, fired_at FROM trigger_state "
                "WHERE scope = ?", (scope,), db=db),
            "cooldowns": await self._fetch(
                "SELECT automation, collection, digest, fired_at FROM artifact_cooldowns "
                "WHERE scope = ?", (scope,), db=db),
            "metadata": await self._fetch(
                "SELECT version, metadata FROM artifact_metadata WHERE scope = ? "
                "ORDER BY rowid", (scope,), db=db),
            "groups": await self._fetch(
                "SELECT grp, automation, digest, fired_at FROM group_state WHERE scope = ?",
                (scope,), db=db),
            "digest_windows": await self._fetch(
                "SELECT id, automation, key, opened_at, closes_at FROM digest_windows "
                "WHERE scope = ? ORDER BY opened_at", (scope,), db=db),
            # Each open window's firings, oldest first (ids increase with creation).
            "digest_items": await self._fetch(
                "SELECT e.digest_id, e.context FROM digest_windows AS w "
                "JOIN executions AS e ON e.digest_id = w.id WHERE w.scope = ? "
                "ORDER BY e.digest_id, e.id", (scope,), db=db),
        }

    async def project_scopes(self) -> list[str]:
        """The projects with runs stored: an entity-wide run automation's actor for
        each starts with the daemon, so their runs' deadlines count from its start."""
        return [row[0] for row in await self._fetch(
            "SELECT DISTINCT scope FROM runs WHERE scope LIKE 'project:%'")]

    async def artifact_metadata(self) -> list[Any]:
        """Every (scope, version, metadata) kept, oldest first: loaded before the socket
        opens, so no scope renders a version's metadata before its keeper restored it."""
        return await self._fetch(
            "SELECT scope, version, metadata FROM artifact_metadata ORDER BY rowid")

    async def run_states(self, scopes: list[str]) -> dict[str, dict[str, list[Any]]]:
        """`run_state` of several scopes as of one instant (one read transaction: a
        checkpoint committing meanwhile cannot split windows from their log), with
        the rows of the firings waiting in open digests ("grouped")."""
        out: dict[str, dict[str, Any]] = {}
        async with self._snapshot_lock:
            db = self._snapshots
            if db is None:  # opened on first use: a single-machine daemon takes none
                db = self._snapshots = await aiosqlite.connect(self.path, isolation_level=None)
                await db.execute("PRAGMA query_only=1")
            await db.execute("BEGIN")
            try:
                for scope in scopes:
                    state = await self.run_state(scope, db)
                    state["grouped"] = await self._fetch(
                        f"SELECT {EXECUTION_COLUMNS}, e.digest_id FROM executions AS e "
                        "JOIN digest_windows AS w ON e.digest_id = w.id WHERE w.scope = ? "
                        "ORDER BY e.id", (scope,), db=db)
                    out[scope] = state
            finally:
                await db.execute("COMMIT")
        return out

    async def summary(self, automations: list[str],
                      since: float) -> dict[str, dict[str, Any]]:
        """Per automation: executions by state since `since`, and the latest one ever.
        Each is a range of the (automation, created_at, state) index; the latest is
        one lookup, not a pass over the whole history."""
        names = msgspec.json.encode(automations).decode()
        out: dict[str, dict[str, Any]] = {a: {"counts": {}, "last": None} for a in automations}
        for automation, state, count in await self._query(
                "SELECT e.automation, e.state, count(*) FROM json_each(?) AS n "
                "JOIN executions AS e ON e.automation = n.value AND e.created_at >= ? "
                "GROUP BY e.automation, e.state", (names, since)):
            out[automation]["counts"][state] = count
        for automation, execution_id, state, created in await self._query(
                "SELECT n.value, e.id, e.state, e.created_at FROM json_each(?) AS n "
                "JOIN executions AS e ON e.rowid = (SELECT rowid FROM executions WHERE "
                "automation = n.value ORDER BY created_at DESC, rowid DESC LIMIT 1)",
                (names,)):
            out[automation]["last"] = {"id": execution_id, "state": state, "created_at": created}
        return out

    async def attempts_of(self, ids: list[str]) -> dict[str, list[Attempt]]:
        if not ids:
            return {}
        rows = await self._query(
            f"SELECT execution_id, {_ATTEMPT_COLUMNS} "
            f"FROM attempts WHERE execution_id IN ({', '.join('?' * len(ids))}) "
            "ORDER BY execution_id, number", ids)
        out: dict[str, list[Attempt]] = {}
        for row in rows:
            out.setdefault(row[0], []).append(_attempt(row[1:]))
        return out

    async def disabled_integrations(self) -> dict[str, str]:
        rows = await self._fetch("SELECT name, reason FROM disabled_integrations")
        return {row[0]: row[1] for row in rows}

    async def redeliverable(self, since: float, automation: str | None) -> list[Execution]:
        """FAILED executions created since `since` that have somewhere to go."""
        sql = (f"SELECT {_COLUMNS} FROM executions WHERE state = 'FAILED' AND created_at >= ? "
               "AND integration IS NOT NULL")
        params: list[Any] = [since]
        if automation is not None:
            sql += " AND automation = ?"
            params.append(automation)
        return [_execution(row) for row in await self._query(sql + " ORDER BY id", params)]

    async def seen_event_ids(self, ids: list[str], since: float) -> set[tuple[str, str]]:
        """(id, scope) for each scope that accepted one of `ids` since `since`."""
        found: set[tuple[str, str]] = set()
        for start in range(0, len(ids), 500):  # SQLite's bound-parameter limit
            part = ids[start:start + 500]
            rows = await self._fetch(
                f"SELECT id, scope FROM event_ids WHERE id IN ({', '.join('?' * len(part))}) "
                "AND received_at >= ?", [*part, since])
            found.update((row[0], row[1]) for row in rows)
        return found
