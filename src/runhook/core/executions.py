"""What a firing records: execution ids, template contexts, rows and delivery jobs (pure)."""

from __future__ import annotations

import functools
import operator
import random
import time
from datetime import UTC, datetime
from typing import Any, Literal, NamedTuple, get_args

import msgspec

from runhook.core.events import (
    ArtifactCreated,
    ArtifactEvent,
    CollectionEvent,
    Event,
    Occurrence,
    RunEvent,
    RunState,
)
from runhook.core.identity import Identity

# The states of an execution, and their one list: the wire protocol, the HTTP API, the
# status page and the CLI take it from here (the executions table's CHECK, written by
# migration 0011, names the same five). PENDING waits for an attempt; FINISHED was
# delivered, or needed no delivery; FAILED was given up; SKIPPED is a crossing inside
# its cooldown or under a silence, recorded and never sent; GROUPED is a firing that
# joined a digest: never sent itself, its `digest_id` names the execution that is.
State = Literal["PENDING", "FINISHED", "FAILED", "SKIPPED", "GROUPED"]
STATES: tuple[State, ...] = get_args(State)

_encoder = msgspec.json.Encoder()
# The times an event may carry: those that datetime can show in UTC (NaN fails both).
FIRST_TIME = datetime(1, 1, 2, tzinfo=UTC).timestamp()
LAST_TIME = datetime(9999, 12, 31, tzinfo=UTC).timestamp()


# The last id's milliseconds, sequence number and `ex_` + milliseconds (formatted
# once a millisecond: the ids of a batch share it, 0.84 -> 0.65 us an id).
_last: list[Any] = [0, 0, ""]
# Seeded from os.urandom at start; not os.urandom per id, which releases the GIL
# and, beside the busy database thread, waited for it (3.6 us -> 0.1 us an id).
_random = random.Random()
_bits = _random.getrandbits


def new_id(now: float | None = None) -> str:
    """`ex_` + milliseconds + a sequence + randomness: unique, strictly increasing
    within the process (so history sorts by creation even inside one batch), and
    the `webhook-id` receivers deduplicate on (stable across retries and restarts)."""
    ms = int((time.time() if now is None else now) * 1000)
    last = _last
    if ms <= last[0]:  # the same millisecond, or the clock went back: the next in it
        seq = last[1] = last[1] + 1
        return f"{last[2]}{seq:06x}{_bits(32):08x}"
    last[0], last[1] = ms, 0
    prefix = last[2] = f"ex_{ms:012x}"
    return f"{prefix}000000{_bits(32):08x}"


def event_timestamp(event: Event, received: float) -> float:
    """The event's own `time` (Unix seconds or RFC 3339) or, without one, its receipt time."""
    value = event.time
    if value is None:
        return received
    if isinstance(value, (int, float)):
        stamp = float(value)
    else:
        parsed = datetime.fromisoformat(value)  # Python 3.11 reads a trailing Z
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        stamp = parsed.timestamp()
    # Every execution shows its event's time in RFC 3339 (UTC), so a time that has
    # none (NaN, 1e300, year 9999 at -23:59) is refused here, not while evaluating.
    if not FIRST_TIME <= stamp < LAST_TIME:
        raise ValueError("must be a time between years 1 and 9999 UTC")
    return stamp


@functools.lru_cache(maxsize=256)
def iso(ts: float) -> str:
    """RFC 3339 in UTC. Cached: the events of one batch share their receipt time."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds") \
        .replace("+00:00", "Z")


# W&B keeps registry NAME in the project `wandb-registry-NAME` (its `${project_name}`).
REGISTRY_PROJECT = "wandb-registry-"


def base_context(event: Event, automation_name: str, execution_id: str, kind: str,
                 event_time: float, author: str) -> dict[str, Any]:
    context: dict[str, Any] = {
        "event_type": kind,
        "event_author": author,
        "entity_name": event.entity,
        "automation_name": automation_name,
        "execution_id": execution_id,
        "event_time": iso(event_time),
    }
    if event.project is not None:
        context["project_name"] = event.project
    if event.registry is not None:
        context["registry_name"] = event.registry
        # What W&B renders there: a registry lives in a project of that name.
        context["project_name"] = event.registry if event.registry.startswith(REGISTRY_PROJECT) \
            else REGISTRY_PROJECT + event.registry
    return context


def artifact_context(event: CollectionEvent, occurrence: Occurrence, automation_name: str,
                     execution_id: str, event_time: float) -> dict[str, Any]:
    """W&B's template variables for an artifact event (a collection's: no version)."""
    if event.registry is None and event.project is not None:
        # base_context's keys, in its order, for a project's event: one dict, no call.
        context: dict[str, Any] = {
            "event_type": occurrence.kind, "event_author": event.author,
            "entity_name": event.entity, "automation_name": automation_name,
            "execution_id": execution_id, "event_time": iso(event_time),
            "project_name": event.project, "artifact_collection_name": event.collection}
    else:
        context = base_context(event, automation_name, execution_id, occurrence.kind,
                               event_time, event.author)
        context["artifact_collection_name"] = event.collection
    if occurrence.tag is not None:
        context["tag"] = occurrence.tag
    if not isinstance(event, ArtifactEvent):
        return context
    version = f"{event.entity}/{event.project or event.registry}/{event.collection}" \
              f":v{event.version}"
    context["artifact_version"] = version
    context["artifact_version_index"] = event.version
    context["artifact_version_string"] = version
    if occurrence.alias is not None:
        context["alias"] = occurrence.alias
        context["artifact_version_string"] = version.rsplit(":", 1)[0] + ":" + occurrence.alias
    if isinstance(event, ArtifactCreated) and event.metadata:
        context["artifact_metadata"] = event.metadata
    return context


def run_context(event: RunEvent, automation_name: str, kind: str, execution_id: str,
                event_time: float, status: str | None, description: str, metric: str | None,
                values: list[float], run: Identity | None = None,
                url: str = "") -> dict[str, Any]:
    """W&B's template variables for a run event; `run` is the identity the daemon
    remembers (the event may carry `run_id` alone), the event's own without it."""
    if run is None:
        run = Identity(event.run_id)
        run.learn(event)
    context = base_context(event, automation_name, execution_id, kind, event_time, run.user)
    context["run_id"] = run.run_id
    context["run_name"] = run.name
    context["run_status"] = event.state if isinstance(event, RunState) else (status or "running")
    context["run_group"] = run.group or ""
    context["run_tags"] = list(run.tags)
    context["run_url"] = url
    if kind == "RUN_STATE":
        # Why it failed or crashed: the client's reason, or the daemon's own.
        reason = event.reason if isinstance(event, RunState) and event.reason else \
            getattr(run, "reason", None)
        context["run_reason"] = reason or ""
    if run.config:
        context["run_config"] = run.config
    context["metric_filter"] = description
    if metric is not None:
        context["metric_name"] = metric
        context["metric_values"] = values
    return context


def group_context(event: Event, automation_name: str, execution_id: str, event_time: float,
                  description: str, summary: dict[str, Any]) -> dict[str, Any]:
    """GROUP_FINISHED's variables: the group, its counts and its best run."""
    context = base_context(event, automation_name, execution_id, "GROUP_FINISHED", event_time,
                           "")
    context["metric_filter"] = description
    context.update(summary)
    return context


# A resolve: an execution whose context holds EVENT_ACTION = RESOLVE tells a channel
# that opens incidents (PagerDuty) that the condition which fired has cleared.
EVENT_ACTION = "event_action"
RESOLVE = "resolve"
RESOLVING_KINDS = frozenset({"pagerduty"})


class ExecutionRow(NamedTuple):
    """An executions row as INSERT_EXECUTION binds it, its fields named as its
    columns: a NamedTuple, not a Struct, because sqlite3's executemany binds a
    sequence as it is (a Struct would be copied into a tuple at every commit)."""

    id: str
    automation: str
    scope: str
    event_kind: str
    event_type: str
    event_id: str | None
    action_kind: str
    integration: str | None
    state: str
    reason: str | None
    context: str  # JSON
    run_id: str | None
    created_at: float
    updated_at: float
    next_attempt_at: float | None


class GroupedRow(ExecutionRow):
    """A firing that joined a digest, as INSERT_GROUPED binds it: an ExecutionRow's
    values, then a 16th, the id of the digest execution that carries it. Made by
    `grouped_row` only (a NamedTuple takes no more fields, and its `_replace` and
    `_make` would drop the 16th)."""

    __slots__ = ()
    digest_id = property(operator.itemgetter(15), doc="the digest execution's id")

    def __repr__(self) -> str:
        return f"GroupedRow{tuple(self)!r}"


# Built by tuple.__new__: a NamedTuple's own __new__ is a Python function, a call
# more a row on the firing path.
_row = tuple.__new__


def execution_row(execution_id: str, automation: str, scope: str, kind: str, event: Event,
                  action_kind: str, integration: str | None, state: str, reason: str | None,
                  context: dict[str, Any], now: float,
                  run_id: str | None = None) -> ExecutionRow:
    """The executions row of a firing."""
    next_attempt = now if state == "PENDING" else None
    return _row(ExecutionRow, (
        execution_id, automation, scope, kind, event.__struct_config__.tag, event.id,
        action_kind, integration, state, reason, _encoder.encode(context).decode(), run_id,
        now, now, next_attempt))


def grouped_row(row: ExecutionRow, digest_id: str) -> GroupedRow:
    """`row` joined to the digest `digest_id`."""
    return _row(GroupedRow, (*row, digest_id))


class Job(NamedTuple):
    """An execution waiting for an attempt: all a sender needs, no secrets."""

    id: str
    automation: str
    integration: str
    context: dict[str, Any]
    attempts: int
    created_at: float
    round_start: int = 0  # attempts made before the last redelivery


TEST_AUTOMATION = "(test)"


def test_context(integration: str, execution_id: str, now: float) -> dict[str, Any]:
    return {"event_type": "TEST", "automation_name": TEST_AUTOMATION,
            "execution_id": execution_id, "event_time": iso(now), "integration": integration}


def test_row(execution_id: str, integration: str, action_kind: str, context: dict[str, Any],
             now: float) -> ExecutionRow:
    """The executions row of `runhook test`: no automation, no event."""
    return ExecutionRow(execution_id, TEST_AUTOMATION, "-", "TEST", "command.test", None,
                        action_kind, integration, "PENDING", None,
                        _encoder.encode(context).decode(), None, now, now, None)
