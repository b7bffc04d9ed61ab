"""`/`: what needs a look, at a glance: automations with their last day, integrations'
health, the latest executions. Its cost is bounded whatever the history holds."""

from __future__ import annotations

import time

from aiohttp import web

from runhook.core.executions import STATES
from runhook.core.words import count
from runhook.ingest import silencing
from runhook.store.reads import Filters
from runhook.web.html import page
from runhook.web.views import Console, html

REFRESH_S = 10
# Each automation's last-day counts read at most this many index entries: `/` must stay
# fast on a history of millions. Past it the total shows as "10000+".
COUNT_CAP = 10_000
RECENT = 15


async def overview(console: Console, request: web.Request) -> web.Response:
    status = console.daemon.status()
    store = console.store
    since = time.time() - 86400
    automations = []
    for a in status.automations:
        counts = await store.counts(a.name, since, COUNT_CAP)
        automations.append({"a": a, "counts": counts, "total": sum(counts.values()),
                            "last": await store.latest(a.name)})
    recent = await store.page(Filters(), RECENT)
    silences = silencing.listing(console.daemon.silences, silencing.now_of(console.daemon),
                                 active_only=True)
    return html(page(
        "overview.html", "Overview", "/", console.flash(request), refresh=REFRESH_S,
        status=status, received=sum(status.events_received.values()),
        count=count, automations=automations, cap=COUNT_CAP, states=STATES,
        states_headers=[f"#{s.lower()}" for s in STATES], silences=silences,
        silence_filters=_silence_filters, sources=status.sources,
        integrations=status.integrations, recent=recent))


def _silence_filters(v: silencing.SilenceView) -> str:
    run_name, group, collection = v.run_name, v.group, v.collection
    found = [f"{name} ~ {pattern}" for name, pattern in
             (("run_name", run_name), ("group", group), ("collection", collection)) if pattern]
    return ", ".join(found) or "every firing"
