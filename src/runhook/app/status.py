"""The daemon's typed status, read from its parts at one instant (metrics, /api/status,
the status page, `runhook status`)."""

from __future__ import annotations

import os
import time

from runhook import __version__
from runhook.config.model import Integration
from runhook.config.settings import Settings
from runhook.core.status import AutomationStatus, DaemonStatus, IntegrationStatus
from runhook.delivery.actor import Deliveries
from runhook.evaluate.routing import Scopes
from runhook.ingest.budget import Budget
from runhook.ingest.ingress import Ingress
from runhook.sources.tracking import Followers
from runhook.store.database import Store


def status(settings: Settings, started_at: float, store: Store, deliveries: Deliveries,
           scopes: Scopes | None, ingress: Ingress | None,
           followers: Followers | None = None) -> DaemonStatus:
    actors = list(scopes.actors.values()) if scopes is not None else []
    return DaemonStatus(
        version=__version__,
        uptime_s=round(time.time() - started_at, 1),
        # Absolute: a relative path means nothing to a client in another directory.
        config=os.path.abspath(settings.source),
        automations=[AutomationStatus(name=a.name, scope=a.scope, kind=a.kind, enabled=a.enabled)
                     for a in settings.automations],
        # An actor whose integration a reload removed is stopping: not listed.
        integrations=[IntegrationStatus(name=name, kind=_kind(settings.integrations[name]),
                                        rate=settings.integrations[name].rate,
                                        in_flight=actor.in_flight, sent=actor.sent,
                                        last_error=actor.last_error, disabled=actor.disabled)
                      for name, actor in deliveries.actors.items()
                      if name in settings.integrations],
        scopes=len(actors),
        tracked_runs=sum(len(a.book.runs) for a in actors),
        queues=queues(store, deliveries, scopes),
        connections=ingress.connections if ingress is not None else 0,
        events_received=dict(ingress.events_received) if ingress is not None else {},
        lines_rejected=ingress.lines_rejected if ingress is not None else 0,
        ingest_budget=budget(ingress.budget) if ingress is not None else {},
        sources=followers.statuses() if followers is not None else [],
    )


def budget(budget: Budget) -> dict[str, int]:
    return {"limit": budget.limit, "in_flight": budget.used, "peak": budget.peak,
            "waits": budget.waits}


def queues(store: Store, deliveries: Deliveries, scopes: Scopes | None) -> dict[str, int]:
    """Items waiting, by queue: the writer's, the scope inboxes' (all together), and
    each delivery actor's."""
    depth = {"writer": store.queued}
    if scopes is not None:
        depth["scope_inboxes"] = sum(a.inbox.statistics().current_buffer_used
                                     for a in scopes.actors.values())
    for name, actor in deliveries.actors.items():
        depth[f"delivery:{name}"] = actor.queued
    return depth


def _kind(integration: Integration) -> str:
    """The integration's `kind` as its configuration says it ("webhook", "slack")."""
    return str(integration.__struct_config__.tag)
