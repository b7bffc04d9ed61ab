"""`/`: what needs a look, at a glance: automations with their last day, integrations'
health, the latest executions. Its cost is bounded whatever the history holds."""

from __future__ import annotations

import time
from html import escape

from aiohttp import web

from runhook.core.executions import STATES
from runhook.core.words import count
from runhook.ingest import silencing
from runhook.store.reads import Filters
from runhook.web.html import badge, link, page, part, table, when
from runhook.web.views import Console, html
from runhook.web.views.integrations import health

REFRESH_S = 10
# Each automation's last-day counts read at most this many index entries: `/` must stay
# fast on a history of millions. Past it the total shows as "10000+".
COUNT_CAP = 10_000
RECENT = 15


async def overview(console: Console, request: web.Request) -> web.Response:
    status = console.daemon.status()
    store = console.store
    since = time.time() - 86400
    rows_a = []
    for a in status.automations:
        counts = await store.counts(a.name, since, COUNT_CAP)
        total = sum(counts.values())
        last = await store.latest(a.name)
        last_cell = (f'{badge(last.state)} {link("/executions/" + part(last.id), "open")} '
                     f'{when(last.created_at)}') if last else '<span class="meta">never</span>'
        rows_a.append(
            f'<tr><td>{link("/automations/" + part(a.name), a.name)}</td>'
            f"<td>{escape(a.kind)}</td><td><code>{escape(a.scope)}</code></td>"
            f"<td>{badge('enabled', 'ok') if a.enabled else badge('disabled', 'off')}</td>"
            f"<td>{last_cell}</td>"
            f'<td class="n">{total}{"+" if total >= COUNT_CAP else ""}</td>'
            + "".join(f'<td class="n">{counts.get(s, 0)}</td>' for s in STATES) + "</tr>")
    rows_i = [f'<tr><td>{link("/integrations", i.name)}</td><td>{escape(i.kind)}</td>'
              f"<td>{health(i)}</td><td class=n>{i.in_flight}</td>"
              f"<td>{escape(i.disabled or i.last_error or '–')}</td></tr>"
              for i in status.integrations]
    recent = await store.page(Filters(), RECENT)
    rows_e = [f'<tr><td>{when(e.created_at)}</td>'
              f'<td>{link("/executions/" + part(e.id), e.id)}</td>'
              f"<td>{escape(e.automation)}</td><td>{escape(e.event_kind)}</td>"
              f"<td>{badge(e.state)}</td><td>{e.attempts}</td>"
              f"<td>{escape(e.reason or '')}</td></tr>" for e in recent]
    rows_s = [f"<tr><td><code>{escape(v.id)}</code></td>"
              f"<td>{escape(v.automation or 'all automations')}</td>"
              f"<td>{escape(_filters(v.run_name, v.group, v.collection))}</td>"
              f"<td>{when(v.ends_at)}</td><td>{escape(v.comment)}</td></tr>"
              for v in silencing.listing(console.daemon.silences, time.time(), active_only=True)]
    rows_f = [f"<tr><td>{escape(f.name)}</td><td>{escape(f.kind)}</td>"
              f"<td><code>{escape(f.url)}</code></td>"
              f"<td>{badge('failing', 'bad') if f.last_error else badge('ok', 'ok')}</td>"
              f"<td class=n>{'–' if f.lag_s is None else f'{f.lag_s:.0f}s'}</td>"
              f"<td class=n>{f.runs}</td><td>{escape(f.last_error or '–')}</td></tr>"
              for f in status.sources]
    received = sum(status.events_received.values())
    body = f"""<p class="meta">version {escape(status.version)} · up {status.uptime_s:.0f}s ·
config <code>{escape(status.config)}</code> · {count(received, "event")} received since start ·
{count(status.lines_rejected, "line")} rejected · {count(status.scopes, "scope")} ·
{count(status.tracked_runs, "run")} tracked · refreshes every {REFRESH_S}s</p>
<h2>Automations <span class="meta">· executions over the last 24 h</span></h2>
{table(["name", "event", "scope", "", "last execution", "#24 h",
        *(f"#{s.lower()}" for s in STATES)], rows_a, "none configured")}
<h2>Silences <span class="meta">· matching firings are recorded SKIPPED, not sent</span></h2>
{table(["silence", "automation", "filters", "until", "comment"], rows_s, "none active")}
{'<h2>Sources <span class="meta">· MLflow tracking servers followed</span></h2>' + table(
    ["name", "kind", "url", "", "#lag", "#runs", "last error"], rows_f, "") if rows_f else ""}
<h2>Integrations</h2>
{table(["name", "kind", "health", "#in flight", "last error"], rows_i, "none configured")}
<h2>Recent executions <span class="meta">· {link("/executions", "all executions")}</span></h2>
{table(["created", "execution", "automation", "event", "state", "tries", "reason"], rows_e,
       "no executions yet")}"""
    return html(page("Overview", "/", body, console.flash(request), refresh=REFRESH_S))


def _filters(run_name: str | None, group: str | None, collection: str | None) -> str:
    found = [f"{name} ~ {pattern}" for name, pattern in
             (("run_name", run_name), ("group", group), ("collection", collection)) if pattern]
    return ", ".join(found) or "every firing"
