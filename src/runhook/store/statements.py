"""The SQL the writer applies: every statement a Write carries, named for what it does."""

from __future__ import annotations

from typing import Self


class Insert(str):
    """An INSERT that says its conflict rule. As itself (the SQL the writer runs), a
    row already there fails the write: one machine makes an id once, so a second is a
    bug to hear of. `if_new` is the same row's INSERT OR IGNORE, which leaves a row
    already there as it is: a cluster node's history mirror may hold the row before
    the node makes it again (an execution a previous owner published)."""

    if_new: str

    def __new__(cls, into: str, values: str) -> Self:
        self = super().__new__(cls, f"INSERT INTO {into} VALUES ({values})")
        self.if_new = f"INSERT OR IGNORE INTO {into} VALUES ({values})"
        return self


INSERT_EXECUTION = Insert(
    "executions (id, automation, scope, event_kind, event_type, event_id, "
    "action_kind, integration, state, reason, context, run_id, created_at, updated_at, "
    "next_attempt_at, attempts)", "?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,0")
# A firing that joined a digest: INSERT_EXECUTION's columns, then the digest's id.
INSERT_GROUPED = Insert(
    "executions (id, automation, scope, event_kind, event_type, event_id, "
    "action_kind, integration, state, reason, context, run_id, created_at, updated_at, "
    "next_attempt_at, attempts, digest_id)", "?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,0,?")
# A digest window opened: (id, scope, automation, key, opened_at, closes_at); closed
# (id) in the commit that inserts its digest execution.
OPEN_DIGEST = ("INSERT INTO digest_windows (id, scope, automation, key, opened_at, closes_at) "
               "VALUES (?,?,?,?,?,?)")
CLEAR_DIGEST = "DELETE FROM digest_windows WHERE id = ?"
INSERT_ATTEMPT = (
    "INSERT INTO attempts (execution_id, number, started_at, duration_ms, status, error, "
    "response) VALUES (?,?,?,?,?,?,?)")
UPDATE_EXECUTION = (
    "UPDATE executions SET state = ?, reason = ?, updated_at = ?, next_attempt_at = ?, "
    "attempts = attempts + 1 WHERE id = ?")
# A history mirror's copy of an attempt (cluster mode), applied in any order and any
# number of times: the attempt only once, and only under an execution it holds; the
# execution's state only forward (a late copy of an earlier attempt does not undo a
# later one), (state, reason, updated_at, next_attempt_at, attempts, id).
MIRROR_ATTEMPT = (
    "INSERT INTO attempts (execution_id, number, started_at, duration_ms, status, "
    "error, response) SELECT ?1,?2,?3,?4,?5,?6,?7 WHERE EXISTS (SELECT 1 FROM "
    "executions WHERE id = ?1) AND NOT EXISTS (SELECT 1 FROM attempts WHERE "
    "execution_id = ?1 AND number = ?2)")
MIRROR_UPDATE = (
    "UPDATE executions SET state = ?1, reason = ?2, updated_at = ?3, "
    "next_attempt_at = ?4, attempts = ?5 WHERE id = ?6 AND attempts < ?5")
# (id, scope, received_at): written by the scope that evaluated the event, in the
# same commit as what the event caused there; scope '*' for an event no scope took.
INSERT_EVENT_ID = "INSERT OR REPLACE INTO event_ids (id, scope, received_at) VALUES (?, ?, ?)"

# The metric log: one blob per write; metric_log holds rows of earlier versions.
LOG_METRICS = "INSERT INTO metric_batches (scope, data) VALUES (?,?)"
CLEAR_LOG = "DELETE FROM metric_batches WHERE scope = ?"
CLEAR_OLD_LOG = "DELETE FROM metric_log WHERE scope = ?"
UPSERT_FLAG = (
    "INSERT INTO trigger_state (scope, run_id, automation, digest, active, fired_at) "
    "VALUES (?,?,?,?,?,?) ON CONFLICT (scope, run_id, automation) DO UPDATE SET "
    "digest = excluded.digest, active = excluded.active, fired_at = excluded.fired_at")
UPSERT_RUN = (
    "INSERT INTO runs (scope, run_id, run_name, user, state, last_seen, ended_at, grp, tags, "
    "config, reason) VALUES (?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT (scope, run_id) DO UPDATE SET "
    "run_name = excluded.run_name, user = excluded.user, state = excluded.state, "
    "last_seen = excluded.last_seen, ended_at = excluded.ended_at, grp = excluded.grp, "
    "tags = excluded.tags, config = excluded.config, reason = excluded.reason")
# GROUP_FINISHED fired for a group: (scope, group, automation, digest, fired_at).
UPSERT_GROUP = (
    "INSERT OR REPLACE INTO group_state (scope, grp, automation, digest, fired_at) "
    "VALUES (?,?,?,?,?)")
# An artifact automation's last firing per collection (its cooldown).
UPSERT_COOLDOWN = (
    "INSERT OR REPLACE INTO artifact_cooldowns (scope, automation, collection, digest, "
    "fired_at) VALUES (?,?,?,?,?)")
# An artifact version's metadata kept for its later events: (scope, version, JSON).
UPSERT_METADATA = "INSERT OR REPLACE INTO artifact_metadata (scope, version, metadata) VALUES (?,?,?)"
FORGET_METADATA = "DELETE FROM artifact_metadata WHERE scope = ? AND version = ?"
UPSERT_WINDOW = (
    "INSERT INTO windows (scope, run_id, metric, size, data) VALUES (?,?,?,?,?) "
    "ON CONFLICT (scope, run_id, metric) DO UPDATE SET size = excluded.size, data = excluded.data")
DISABLE_INTEGRATION = ("INSERT OR REPLACE INTO disabled_integrations (name, disabled_at, reason) "
                       "VALUES (?,?,?)")
ENABLE_INTEGRATION = "DELETE FROM disabled_integrations WHERE name = ?"
# A redelivery: back to PENDING, due now, with a fresh retry schedule.
REDELIVER = ("UPDATE executions SET state = 'PENDING', reason = ?, updated_at = ?, "
             "next_attempt_at = ?, round_start = attempts WHERE id = ?")
# /readyz after a failed write: a row inserted and deleted in one transaction.
# Nothing stays, but the commit writes the pages it touched, so it proves a write
# can commit. schema_migrations, because it is the one table whose shape never
# changes (migrate() creates it before any migration); no migration is named ''.
PROBE_WRITE = "INSERT OR REPLACE INTO schema_migrations (name, applied_at) VALUES ('', ?)"
PROBE_UNDO = "DELETE FROM schema_migrations WHERE name = ''"
# Housekeeping, each bounded to PURGE_BATCH rows (see constants).
PURGE_EVENT_IDS = ("DELETE FROM event_ids WHERE rowid IN (SELECT rowid FROM event_ids "
                   "WHERE received_at < ? LIMIT ?)")
PURGE_ATTEMPTS = ("DELETE FROM attempts WHERE execution_id IN (SELECT id FROM executions "
                  "WHERE created_at < ? AND state != 'PENDING' ORDER BY created_at LIMIT ?)")
PURGE_EXECUTIONS = ("DELETE FROM executions WHERE id IN (SELECT id FROM executions "
                    "WHERE created_at < ? AND state != 'PENDING' ORDER BY created_at LIMIT ?)")
# Executions waiting for an integration the configuration no longer has.
FAIL_ORPHANS = ("UPDATE executions SET state = 'FAILED', updated_at = ?, next_attempt_at = NULL, "
                "reason = 'integration ' || integration || ' is no longer configured; "
                "`runhook redeliver` once it is back' WHERE state = 'PENDING' "
                "AND integration IS NOT NULL "
                "AND integration NOT IN (SELECT value FROM json_each(?))")
FORGET_RUN = [f"DELETE FROM {table} WHERE scope = ? AND run_id = ?"
              for table in ("runs", "windows", "trigger_state")]

# Silences: (id, automation, run_name, run_group, collection, comment, created_at, ends_at).
INSERT_SILENCE = ("INSERT INTO silences (id, automation, run_name, run_group, collection, "
                  "comment, created_at, ends_at) VALUES (?,?,?,?,?,?,?,?)")
# (now, now, id): ended now, unless it already ended.
EXPIRE_SILENCE = ("UPDATE silences SET ends_at = min(ends_at, ?), expired_at = ? "
                  "WHERE id = ? AND expired_at IS NULL")
# Silences that ended before the cutoff are no longer listed.
PURGE_SILENCES = "DELETE FROM silences WHERE ends_at < ?"
