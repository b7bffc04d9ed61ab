"""The daemon's status as typed Structs: what /metrics, the status page, /api/status and
`runhook status` read (the JSON keys are the field names)."""

from __future__ import annotations

from typing import Any

import msgspec


class LastExecution(msgspec.Struct, kw_only=True):
    """An automation's most recent execution, as the status page shows it."""

    id: str
    state: str
    created_at: float


class AutomationStatus(msgspec.Struct, kw_only=True):
    name: str
    scope: str
    kind: str
    enabled: bool
    # Read from the history by the overview (the status page, `runhook status`);
    # the daemon's live status leaves them empty.
    counts_24h: dict[str, int] = {}
    last: LastExecution | None = None


class IntegrationStatus(msgspec.Struct, kw_only=True):
    name: str
    kind: str  # "webhook" or "slack"
    rate: str | None
    in_flight: int
    sent: int
    last_error: str | None
    disabled: str | None  # why, while a 410 keeps it disabled


class SourceStatus(msgspec.Struct, kw_only=True):
    """A followed source (an MLflow tracking server): how far behind it is and why."""

    name: str
    kind: str
    url: str
    lag_s: float | None  # since the start of its last complete look; None before one
    last_error: str | None  # of the last look, None once a look succeeds
    failures: int  # looks failed in a row (each backs off longer)
    looks: int
    events: int  # events sent since start
    requests: int  # calls to the server since start
    runs: int  # runs its cursor holds


class DaemonStatus(msgspec.Struct, kw_only=True):
    """The running daemon at one instant; built on demand, never stored."""

    version: str
    uptime_s: float
    config: str
    automations: list[AutomationStatus]
    integrations: list[IntegrationStatus]
    scopes: int
    tracked_runs: int
    queues: dict[str, int]  # items waiting, by queue ("writer", "scope_inboxes", "delivery:NAME")
    connections: int
    events_received: dict[str, int]  # by event type
    lines_rejected: int
    # The ingest budget, in bytes: "limit", "in_flight" now, "peak" since start, and
    # "waits" (reads that waited for room).
    ingest_budget: dict[str, int] = {}
    # Cluster mode: this node's name, the live nodes and the partitions it owns.
    cluster: dict[str, Any] | None = None
    sources: list[SourceStatus] = []  # followed sources (MLflow tracking servers)
