"""A partition's state as a checkpoint: its scopes' run state (what a scope actor
restores from) and the stream position it holds up to; put into and taken out of
this node's SQLite store."""

from __future__ import annotations

import math
from typing import Annotated, Any

import msgspec

from runhook.cluster.bus import partition_of
from runhook.store.database import Statement, Store, Write
from runhook.store.statements import (
    INSERT_GROUPED,
    LOG_METRICS,
    OPEN_DIGEST,
    UPSERT_FLAG,
    UPSERT_GROUP,
    UPSERT_RUN,
    UPSERT_WINDOW,
)

# 2 adds the deadlines' times (`since`, `at`, `times`); a format-1 checkpoint is read
# as before (its new owner counts deadlines from its takeover).
FORMAT = 2
READS = (1, 2)
_TABLES = ("runs", "windows", "metric_log", "metric_batches", "trigger_state", "group_state",
           "digest_windows")
_GROUPED = INSERT_GROUPED.replace("INSERT", "INSERT OR IGNORE", 1)
_OLD_LOG = "INSERT INTO metric_log (scope, run_id, run_name, user, data) VALUES (?,?,?,?,?)"
# A time as a checkpoint holds one: finite and within what a stream time can be (as the
# history's records, cluster/records.py). NaN, an infinity or 1e300 fails the decode:
# the checkpoint is then corrupt (its partition starts at its position without it).
_Time = Annotated[float, msgspec.Meta(ge=-1e15, le=1e15)]


class Times(msgspec.Struct, array_like=True):
    """What a scope's deadlines count from that its tables do not hold (the book's
    memory): when each stall-watched metric of a run last had values, and when
    each group last had a run join (its settle deadline counts from that)."""

    values: dict[str, dict[str, _Time]] = {}  # run id -> metric ("" for any) -> time
    joined: dict[str, _Time] = {}  # group -> time


class Snapshot(msgspec.Struct, array_like=True):
    format: int
    seq: int  # the last stream sequence whose effects this holds
    node: str  # who wrote it
    scopes: dict[str, dict[str, list[list[Any]]]]
    # Since when the partition was watched without a break (stream time): silence
    # before it does not count. None in format 1.
    since: _Time | None = None
    at: _Time | None = None  # the stream time it was written at
    times: dict[str, Times] = {}


async def export(store: Store, scopes: list[str], seq: int, node: str, since: float | None = None,
                 at: float | None = None, times: dict[str, Times] | None = None) -> bytes:
    state = {}
    for scope, rows in (await store.run_states(scopes)).items():
        if any(rows.values()):
            state[scope] = {name: [list(row) for row in table] for name, table in rows.items()}
    return msgspec.msgpack.encode(Snapshot(FORMAT, seq, node, state, since, at, times or {}))


def decode(data: bytes) -> Snapshot:
    snapshot = msgspec.msgpack.decode(data, type=Snapshot)
    if snapshot.format not in READS:
        raise ValueError(f"checkpoint format {snapshot.format} is not one this node reads "
                         f"({', '.join(map(str, READS))}): a newer runhook wrote it")
    return snapshot


def admit(snapshot: Snapshot, partition: int, partitions: int, now: float, floor: float
          ) -> tuple[Snapshot, list[str]]:
    """The snapshot as partition `partition`'s new owner takes it, and the scopes it
    left out. Only the partition's own scopes: a checkpoint naming another's was not
    written by runhook, and loading it would wipe that partition's local state. Every
    time within [floor, now]: a time past now would push its deadline out (a stall
    that never fires), one before the floor (the stream's retention ago: older events
    are gone) would fire it at once; a real checkpoint holds neither, except a time
    older than the floor, whose deadline is past either way."""
    def mine(scope: str) -> bool:
        return partition_of(scope, partitions) == partition

    def bound(at: float) -> float:  # NaN (only in a snapshot not decoded): counts from now
        return now if math.isnan(at) else min(max(at, floor), now)

    foreign = sorted({s for s in (*snapshot.scopes, *snapshot.times) if not mine(s)})
    times = {scope: Times({run: {metric: bound(at) for metric, at in metrics.items()}
                           for run, metrics in kept.values.items()},
                          {group: bound(at) for group, at in kept.joined.items()})
             for scope, kept in snapshot.times.items() if mine(scope)}
    return msgspec.structs.replace(
        snapshot, scopes={s: state for s, state in snapshot.scopes.items() if mine(s)},
        since=None if snapshot.since is None else bound(snapshot.since),
        at=None if snapshot.at is None else bound(snapshot.at), times=times), foreign


def watched_since(snapshot: Snapshot | None, up_since: float, now: float) -> float:
    """Since when silence counts for a new owner (docs/cluster.md, what survives a
    takeover). The partition was watched without a break when its checkpoint was
    written while this node was up (and this node took the events of the gap): then
    since the old owner's own `since`. Otherwise (every node was down meanwhile, or a
    format-1 checkpoint) since this node came up, as after one machine's restart."""
    if snapshot is not None and snapshot.since is not None and snapshot.at is not None \
            and snapshot.at >= up_since:
        return min(snapshot.since, now)
    if snapshot is not None and snapshot.since is None:
        return now  # format 1: as before, counted from the takeover
    return min(up_since, now)


async def load(store: Store, scopes: list[str], snapshot: Snapshot | None) -> None:
    """Replace what this node holds for `scopes` (a cache of an earlier ownership,
    perhaps stale) by the snapshot's, in one transaction."""
    statements: list[Statement] = []
    every = set(scopes) | set(snapshot.scopes if snapshot else ())
    for table in _TABLES:
        statements.append((f"DELETE FROM {table} WHERE scope = ?", [(s,) for s in every]))
    for scope, state in (snapshot.scopes.items() if snapshot else ()):
        _rows(statements, UPSERT_RUN, [(scope, *r) for r in state.get("runs", [])])
        _rows(statements, UPSERT_WINDOW, [(scope, *r) for r in state.get("windows", [])])
        _rows(statements, _OLD_LOG, [(scope, *r) for r in state.get("log", [])])
        _rows(statements, LOG_METRICS, [(scope, *r) for r in state.get("batches", [])])
        _rows(statements, UPSERT_FLAG, [(scope, *r) for r in state.get("flags", [])])
        _rows(statements, UPSERT_GROUP, [(scope, *r) for r in state.get("groups", [])])
        # OPEN_DIGEST's columns: the window's id, then its scope, then the rest.
        _rows(statements, OPEN_DIGEST, [(window_id, scope, *rest)
                                        for window_id, *rest in state.get("digest_windows", [])])
        # The firings an open digest holds: its items when it closes here.
        _rows(statements, _GROUPED, [tuple(r) for r in state.get("grouped", [])])
    await store.commit(Write(statements, barrier=True))


def _rows(statements: list[Statement], sql: str, rows: list[tuple[Any, ...]]) -> None:
    if rows:
        statements.append((sql, rows))
