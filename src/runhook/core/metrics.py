"""Prometheus metrics. The hot path only bumps plain dict counters; prometheus-client
turns them into the text format when /metrics is scraped."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from runhook.core import bounds
from runhook.core.status import DaemonStatus
from runhook.core.words import count

# Delivery latency buckets (seconds): loopback receivers answer in a millisecond,
# real endpoints in tens to hundreds, timeouts at 15 s.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 15, 30)
BATCH_BUCKETS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.executions: dict[tuple[str, str], int] = {}      # (automation, state)
        self.deliveries: dict[tuple[str, str], int] = {}      # (integration, outcome)
        self.latency = Histogram("runhook_delivery_seconds", "Time of one delivery attempt.",
                                 ["integration"], buckets=LATENCY_BUCKETS,
                                 registry=self.registry)
        self._latency: dict[str, Any] = {}
        self.batches = Histogram("runhook_db_write_batch_size",
                                 "Writes committed together in one transaction.",
                                 buckets=BATCH_BUCKETS, registry=self.registry)

    def execution(self, automation: str, state: str, count: int = 1) -> None:
        key = (automation, state)
        self.executions[key] = self.executions.get(key, 0) + count

    def delivered(self, integration: str, automation: str, state: str, seconds: float,
                  answered: bool) -> None:
        outcome = {"FINISHED": "success", "PENDING": "retry", "FAILED": "failed"}[state]
        key = (integration, outcome)
        self.deliveries[key] = self.deliveries.get(key, 0) + 1
        if state != "PENDING":
            self.execution(automation, state)
        if answered:
            child = self._latency.get(integration)
            if child is None:
                child = self._latency[integration] = self.latency.labels(integration)
            child.observe(seconds)

    def totals(self) -> dict[str, int]:
        """Delivery attempts so far by outcome (success, retry, failed)."""
        out = {"success": 0, "retry": 0, "failed": 0}
        for (_, outcome), n in self.deliveries.items():
            out[outcome] += n
        return out

    def attach(self, source: Callable[[], DaemonStatus]) -> None:
        """Read the daemon's own counters and gauges at scrape time."""
        self.registry.register(_Collector(self, source))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _Collector:
    def __init__(self, metrics: Metrics, source: Callable[[], DaemonStatus]) -> None:
        self.metrics = metrics
        self.source = source

    def describe(self) -> list[Metric]:
        return []  # collected only at scrape time

    def collect(self) -> Iterator[Metric]:
        s = self.source()
        events = CounterMetricFamily("runhook_events_received", "Events accepted by type.",
                                     labels=["type"])
        for kind, n in sorted(s.events_received.items()):
            events.add_metric([kind], n)
        yield events
        rejected = CounterMetricFamily("runhook_lines_rejected", "Lines refused with an error.")
        rejected.add_metric([], s.lines_rejected)
        yield rejected
        hits = CounterMetricFamily("runhook_bound_hits",
                                   "Refusals (or digest firings sent alone) at a bound.",
                                   labels=["bound"])
        for bound, n in sorted(bounds.HITS.items()):
            hits.add_metric([bound], n)
        yield hits
        executions = CounterMetricFamily(
            "runhook_executions", "Executions reaching a state, by automation.",
            labels=["automation", "state"])
        for (automation, state), n in sorted(self.metrics.executions.items()):
            executions.add_metric([automation, state], n)
        yield executions
        deliveries = CounterMetricFamily(
            "runhook_deliveries", "Delivery attempts by integration and outcome.",
            labels=["integration", "outcome"])
        for (integration, outcome), n in sorted(self.metrics.deliveries.items()):
            deliveries.add_metric([integration, outcome], n)
        yield deliveries
        depth = GaugeMetricFamily("runhook_queue_depth", "Items waiting in a queue.",
                                  labels=["queue"])
        for queue, n in sorted(s.queues.items()):
            depth.add_metric([queue], n)
        yield depth
        for name, help_text, value in (
                ("runhook_scope_actors", "Scope actors running.", s.scopes),
                ("runhook_tracked_runs", "Runs whose metric state is kept.", s.tracked_runs),
                ("runhook_connections", "Open socket connections.", s.connections)):
            gauge = GaugeMetricFamily(name, help_text)
            gauge.add_metric([], value)
            yield gauge
        yield from _budget(s.ingest_budget)
        yield from _cluster(s.cluster)
        disabled = GaugeMetricFamily("runhook_integration_disabled",
                                     "1 while an integration is disabled by a 410.",
                                     labels=["integration"])
        for entry in s.integrations:
            disabled.add_metric([entry.name], 1 if entry.disabled else 0)
        yield disabled


def _cluster(cluster: dict[str, Any] | None) -> Iterator[Metric]:
    """A cluster node's NATS reachability, history mirror and refused records."""
    if not cluster or "nats" not in cluster:
        return
    reachable = GaugeMetricFamily("runhook_cluster_nats_reachable",
                                  "1 while JetStream answers this node.")
    reachable.add_metric([], 1 if cluster["nats"]["jetstream"] else 0)
    yield reachable
    mirror = cluster["mirror"]
    lag = GaugeMetricFamily("runhook_cluster_history_lag",
                            "History records this node's mirror has not applied yet.")
    lag.add_metric([], mirror["lag"] or 0)
    yield lag
    rejected = CounterMetricFamily("runhook_cluster_history_rejected",
                                   "History records refused as not runhook's, by kind.",
                                   labels=["kind"])
    for kind, n in sorted(mirror["rejected"].items()):
        rejected.add_metric([kind], n)
    yield rejected
    backoff = GaugeMetricFamily("runhook_cluster_partitions_backoff",
                                "Owned partitions starting again after a failure.")
    backoff.add_metric([], len(cluster["backoff"]))
    yield backoff


def _budget(budget: dict[str, int]) -> Iterator[Metric]:
    """The ingest budget shared by the socket and HTTPS (ingest/budget.py)."""
    if not budget:
        return
    for name, key, help_text in (
            ("runhook_ingest_budget_bytes", "limit", "Bytes read but not yet committed, at most."),
            ("runhook_ingest_in_flight_bytes", "in_flight", "Bytes read but not yet committed."),
            ("runhook_ingest_in_flight_peak_bytes", "peak", "The most in flight since start.")):
        gauge = GaugeMetricFamily(name, help_text)
        gauge.add_metric([], budget[key])
        yield gauge
    waits = CounterMetricFamily("runhook_ingest_budget_waits",
                                "Reads that waited for room in the ingest budget.")
    waits.add_metric([], budget["waits"])
    yield waits


def activity_line(before: dict[str, int], after: dict[str, int], seconds: float) -> str | None:
    """The INFO summary of what changed between two snapshots of the counters
    (events, executions, success, retry, failed); None when nothing happened."""
    d = {key: after.get(key, 0) - before.get(key, 0) for key in after}
    if not any(d.values()):
        return None
    return (f"last {seconds:.0f}s: {count(d['events'], 'event')}, "
            f"{count(d['executions'], 'execution')}, {d['success']:,} delivered, "
            f"{count(d['retry'], 'retry', 'retries')} scheduled, {d['failed']:,} failed")
