"""Schema migrations: ordered, named, each recorded in the transaction that applies it."""

from __future__ import annotations

import time

import aiosqlite


def _0001_executions() -> list[str]:
    return [
        """CREATE TABLE executions (
            id TEXT PRIMARY KEY,
            automation TEXT NOT NULL,
            scope TEXT NOT NULL,
            event_kind TEXT NOT NULL,          -- W&B kind, e.g. ADD_ARTIFACT_ALIAS
            event_type TEXT NOT NULL,          -- wire type, e.g. artifact.alias_added
            event_id TEXT,                     -- the client's idempotency id, if any
            action_kind TEXT NOT NULL,         -- webhook, slack or none
            integration TEXT,
            state TEXT NOT NULL CHECK (state IN ('PENDING','FINISHED','FAILED','SKIPPED')),
            reason TEXT,
            context TEXT NOT NULL,             -- template variables as JSON, never rendered secrets
            run_id TEXT,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            next_attempt_at REAL,
            attempts INTEGER NOT NULL DEFAULT 0
        )""",
        "CREATE INDEX executions_by_automation ON executions (automation, created_at)",
        "CREATE INDEX executions_by_created ON executions (created_at)",
        """CREATE INDEX executions_due ON executions (integration, next_attempt_at)
           WHERE state = 'PENDING'""",
        """CREATE TABLE attempts (
            id INTEGER PRIMARY KEY,
            execution_id TEXT NOT NULL REFERENCES executions (id),
            number INTEGER NOT NULL,
            started_at REAL NOT NULL,
            duration_ms REAL NOT NULL,
            status INTEGER,
            error TEXT,
            response TEXT                      -- first 1 KiB of the answer, secrets redacted
        )""",
        "CREATE INDEX attempts_by_execution ON attempts (execution_id)",
        "CREATE TABLE event_ids (id TEXT PRIMARY KEY, received_at REAL NOT NULL)",
        "CREATE INDEX event_ids_by_time ON event_ids (received_at)",
    ]


def _0002_run_state() -> list[str]:
    """Run state that must survive a restart: crossing flags and cooldowns (written
    with the executions they cause), metric windows (checkpointed) and the values
    logged since the last checkpoint (replayed on start, so no acknowledged value
    is lost from a window)."""
    return [
        """CREATE TABLE runs (
            scope TEXT NOT NULL, run_id TEXT NOT NULL, run_name TEXT NOT NULL,
            user TEXT NOT NULL, state TEXT, last_seen REAL NOT NULL, ended_at REAL,
            PRIMARY KEY (scope, run_id)) WITHOUT ROWID""",
        """CREATE TABLE windows (
            scope TEXT NOT NULL, run_id TEXT NOT NULL, metric TEXT NOT NULL,
            size INTEGER NOT NULL, data BLOB NOT NULL,   -- float64 values, oldest first
            PRIMARY KEY (scope, run_id, metric)) WITHOUT ROWID""",
        """CREATE TABLE metric_log (
            seq INTEGER PRIMARY KEY, scope TEXT NOT NULL, run_id TEXT NOT NULL,
            run_name TEXT NOT NULL, user TEXT NOT NULL,
            data BLOB NOT NULL)                          -- msgpack {metric: value}""",
        "CREATE INDEX metric_log_by_scope ON metric_log (scope, seq)",
        """CREATE TABLE trigger_state (
            scope TEXT NOT NULL, run_id TEXT NOT NULL, automation TEXT NOT NULL,
            digest TEXT NOT NULL,                        -- of the automation's definition
            active INTEGER NOT NULL, fired_at REAL,
            PRIMARY KEY (scope, run_id, automation)) WITHOUT ROWID""",
    ]


def _0003_delivery_control() -> list[str]:
    """Integrations disabled by a 410 stay disabled across restarts until enabled;
    a redelivery starts a fresh retry schedule from `round_start`."""
    return [
        """CREATE TABLE disabled_integrations (
            name TEXT PRIMARY KEY, disabled_at REAL NOT NULL, reason TEXT NOT NULL)""",
        "ALTER TABLE executions ADD COLUMN round_start INTEGER NOT NULL DEFAULT 0",
    ]


def _0004_status_counts() -> list[str]:
    """The status page counts each automation's executions of the last 24 h by
    state: with `state` in the index that is a scan of the index alone (measured
    on 2 M executions, 1 M of them in the last day: 2.0 s -> 0.5 s). metric_log's
    data is JSON text since this version; rows written before are msgpack."""
    return [
        "DROP INDEX executions_by_automation",
        "CREATE INDEX executions_by_automation ON executions (automation, created_at, state)",
    ]


def _0005_event_ids_per_scope() -> list[str]:
    """An event's id is recorded by each scope that evaluated it, in the commit of
    what it caused there, so an event that reached two scopes and committed in
    one before a crash is evaluated again in the other only. Ids recorded before
    this version stand for every scope ('*')."""
    return [
        """CREATE TABLE event_ids_by_scope (
            id TEXT NOT NULL, scope TEXT NOT NULL, received_at REAL NOT NULL,
            PRIMARY KEY (id, scope))""",
        "INSERT INTO event_ids_by_scope SELECT id, '*', received_at FROM event_ids",
        "DROP TABLE event_ids",
        "ALTER TABLE event_ids_by_scope RENAME TO event_ids",
        "CREATE INDEX event_ids_by_time ON event_ids (received_at)",
    ]


def _0006_metric_batches() -> list[str]:
    """The metric log as one blob per write (the events whose values went into
    rings, msgpack), not a row per event: a fifth of the writer's work at ingest.
    metric_log keeps the rows of earlier versions until the next checkpoint
    clears them; a restart replays those first, then the batches."""
    return [
        """CREATE TABLE metric_batches (
            seq INTEGER PRIMARY KEY, scope TEXT NOT NULL,
            data BLOB NOT NULL)                          -- msgpack [event, ...]""",
        "CREATE INDEX metric_batches_by_scope ON metric_batches (scope, seq)",
    ]


def _0007_silences() -> list[str]:
    """Silences: who is muted, until when, and why. A NULL automation silences every
    automation; the patterns are RE2 filters as given. `ends_at` is moved to the
    moment of `runhook silence expire`, which `expired_at` records."""
    return [
        """CREATE TABLE silences (
            id TEXT PRIMARY KEY, automation TEXT, run_name TEXT, run_group TEXT,
            collection TEXT, comment TEXT NOT NULL, created_at REAL NOT NULL,
            ends_at REAL NOT NULL, expired_at REAL)""",
        "CREATE INDEX silences_by_end ON silences (ends_at)",
    ]


def _0008_console_filters() -> list[str]:
    """The console lists executions newest first by state or run: each filter gets an
    index led by it and ordered by time, so a page reads its own rows (on 2 M
    executions a rare state's page scanned the time index to its end). Both are
    partial, so the common insert pays nothing: FINISHED (the common end, and the
    state kind = "none" is born in) is found fast on the time index; artifact
    executions have no run. Collections have no index: one on the context's JSON
    cost a JSON parse per insert, 12 % of the firing rate (measured); a collection
    filter reads the time index."""
    return [
        ("CREATE INDEX executions_by_state ON executions (state, created_at) "
         "WHERE state != 'FINISHED'"),
        ("CREATE INDEX executions_by_run ON executions (run_id, created_at) "
         "WHERE run_id IS NOT NULL"),
    ]


def _0009_run_health() -> list[str]:
    """Run health (docs/run-health.md): a run's remembered identity (group, tags and config as
    JSON) and why the daemon set its state (`no heartbeat for 5m`); and which
    GROUP_FINISHED automations fired for which group, written with the execution,
    so a restart neither repeats nor loses one. Deadlines are not stored: they count
    from the daemon's start, and are rebuilt from these rows."""
    return [
        "ALTER TABLE runs ADD COLUMN grp TEXT",
        "ALTER TABLE runs ADD COLUMN tags TEXT",
        "ALTER TABLE runs ADD COLUMN config TEXT",
        "ALTER TABLE runs ADD COLUMN reason TEXT",
        """CREATE TABLE group_state (
            scope TEXT NOT NULL, grp TEXT NOT NULL, automation TEXT NOT NULL,
            digest TEXT NOT NULL, fired_at REAL NOT NULL,
            PRIMARY KEY (scope, grp, automation)) WITHOUT ROWID""",
    ]


def _0010_source_versions() -> list[str]:
    """A Hugging Face repo's commits numbered per source and repo, as artifact
    versions: one row per commit, so a redelivered or replayed webhook for a commit
    gets the number it got the first time."""
    return [
        """CREATE TABLE source_versions (
            source TEXT NOT NULL, repo TEXT NOT NULL, sha TEXT NOT NULL,
            version INTEGER NOT NULL, created_at REAL NOT NULL,
            PRIMARY KEY (source, repo, sha)) WITHOUT ROWID""",
        "CREATE UNIQUE INDEX source_versions_by_number ON source_versions (source, repo, version)",
    ]


_EXECUTION_COLUMNS = ("id, automation, scope, event_kind, event_type, event_id, action_kind, "
                      "integration, state, reason, context, run_id, created_at, updated_at, "
                      "next_attempt_at, attempts, round_start")


def _0011_digests() -> list[str]:
    """Digests (docs/alert-fatigue.md). A firing that joins one is an execution in the new state
    GROUPED, with `digest_id` naming the execution that carries it; SQLite cannot
    change a CHECK in place, so the table is rebuilt (one pass over the history, once)
    with its indexes, plus one over `digest_id`, partial so other inserts pay nothing.
    An open window is a row of `digest_windows`, keyed by the id its digest execution
    will have: the row is deleted in the commit that inserts that execution, so a
    window that closed while the daemon was down is delivered at start, once."""
    return [
        """CREATE TABLE executions_0011 (
            id TEXT PRIMARY KEY,
            automation TEXT NOT NULL,
            scope TEXT NOT NULL,
            event_kind TEXT NOT NULL,
            event_type TEXT NOT NULL,
            event_id TEXT,
            action_kind TEXT NOT NULL,
            integration TEXT,
            state TEXT NOT NULL
                CHECK (state IN ('PENDING','FINISHED','FAILED','SKIPPED','GROUPED')),
            reason TEXT,
            context TEXT NOT NULL,
            run_id TEXT,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            next_attempt_at REAL,
            attempts INTEGER NOT NULL DEFAULT 0,
            round_start INTEGER NOT NULL DEFAULT 0,
            digest_id TEXT                     -- GROUPED: the digest execution carrying it
        )""",
        (f"INSERT INTO executions_0011 ({_EXECUTION_COLUMNS}) "
         f"SELECT {_EXECUTION_COLUMNS} FROM executions"),
        "DROP TABLE executions",
        "ALTER TABLE executions_0011 RENAME TO executions",
        "CREATE INDEX executions_by_automation ON executions (automation, created_at, state)",
        "CREATE INDEX executions_by_created ON executions (created_at)",
        """CREATE INDEX executions_due ON executions (integration, next_attempt_at)
           WHERE state = 'PENDING'""",
        ("CREATE INDEX executions_by_state ON executions (state, created_at) "
         "WHERE state != 'FINISHED'"),
        ("CREATE INDEX executions_by_run ON executions (run_id, created_at) "
         "WHERE run_id IS NOT NULL"),
        "CREATE INDEX executions_by_digest ON executions (digest_id) WHERE digest_id IS NOT NULL",
        """CREATE TABLE digest_windows (
            id TEXT PRIMARY KEY,               -- the digest execution's id, chosen at open
            scope TEXT NOT NULL, automation TEXT NOT NULL,
            key TEXT NOT NULL,                 -- JSON list of the `by` values
            opened_at REAL NOT NULL, closes_at REAL NOT NULL)""",
        "CREATE INDEX digest_windows_by_scope ON digest_windows (scope)",
    ]


def _0012_artifact_cooldowns() -> list[str]:
    """When each artifact automation last fired per collection (docs/wandb.md)."""
    return [
        """CREATE TABLE artifact_cooldowns (
            scope TEXT NOT NULL, automation TEXT NOT NULL, collection TEXT NOT NULL,
            digest TEXT NOT NULL, fired_at REAL NOT NULL,
            PRIMARY KEY (scope, automation, collection))""",
    ]


def _0013_artifact_metadata() -> list[str]:
    """The metadata of recent artifact versions, for `${artifact_metadata.KEY}` on later
    events of each version (docs/guarantees.md); restored in insertion order (rowid), which a
    REPLACE renews, so the oldest is forgotten first."""
    return [
        """CREATE TABLE artifact_metadata (
            scope TEXT NOT NULL,               -- the entity:E scope that keeps them
            version TEXT NOT NULL,             -- entity/project-or-registry/collection:vN
            metadata TEXT NOT NULL,            -- JSON
            UNIQUE (scope, version))""",
    ]


def _0014_source_cursors() -> list[str]:
    """Where each MLflow tracking source is in its server (docs/mlflow.md): its cursor and
    the events of its last look, written before they are sent, so a restart resends
    exactly those (answered duplicate when they had committed) and reads on from the
    cursor: nothing missed, nothing evaluated twice."""
    return [
        """CREATE TABLE source_cursors (
            source TEXT PRIMARY KEY, cursor BLOB NOT NULL, pending BLOB NOT NULL,
            updated_at REAL NOT NULL) WITHOUT ROWID""",
    ]


MIGRATIONS = [_0001_executions, _0002_run_state, _0003_delivery_control, _0004_status_counts,
              _0005_event_ids_per_scope, _0006_metric_batches, _0007_silences,
              _0008_console_filters, _0009_run_health, _0010_source_versions, _0011_digests,
              _0012_artifact_cooldowns, _0013_artifact_metadata,
              _0014_source_cursors]


async def migrate(db: aiosqlite.Connection) -> list[str]:
    """Apply every migration not yet recorded; returns the names applied."""
    await db.execute("CREATE TABLE IF NOT EXISTS schema_migrations "
                     "(name TEXT PRIMARY KEY, applied_at REAL NOT NULL)")
    async with db.execute("SELECT name FROM schema_migrations") as cursor:
        done = {row[0] async for row in cursor}
    applied = []
    for migration in MIGRATIONS:
        name = migration.__name__.lstrip("_")
        if name in done:
            continue
        await db.execute("BEGIN IMMEDIATE")
        try:
            for statement in migration():
                await db.execute(statement)
            await db.execute("INSERT INTO schema_migrations VALUES (?, ?)", (name, time.time()))
            await db.execute("COMMIT")
        except BaseException:
            await db.execute("ROLLBACK")
            raise
        applied.append(name)
    return applied
