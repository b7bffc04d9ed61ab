"""`/executions/ID`: one execution: its event's variables, the request it sends (built
as at send time, every secret masked), and every attempt with what the endpoint said."""

from __future__ import annotations

from html import escape
from typing import Any

import msgspec
from aiohttp import web

from runhook.delivery import preview
from runhook.web import charts
from runhook.web.html import badge, button, link, page, part, table, when
from runhook.web.views import Console, html, not_found
from runhook.web.views.executions import subject


async def execution(console: Console, request: web.Request) -> web.Response:
    execution_id = request.match_info["id"]
    found = await console.store.execution(execution_id)
    if found is None:
        return not_found(f"no execution {execution_id!r}")
    settings = console.daemon.settings
    redact = settings.redactor
    attempts = await console.store.attempts(found.id)
    facts = [
        ("state", badge(found.state) + (f" {escape(found.reason)}" if found.reason else "")),
        ("automation", link("/automations/" + part(found.automation), found.automation)),
        ("scope", f"<code>{escape(found.scope)}</code>"),
        ("about", subject(found) or "–"),
        ("event", f"{escape(found.event_kind)} (<code>{escape(found.event_type)}</code>)"),
        ("event id", escape(found.event_id or "–")),
        ("integration", escape(found.integration or "none")),
        ("created", when(found.created_at)), ("updated", when(found.updated_at)),
        ("next attempt", when(found.next_attempt_at)),
    ]
    if found.digest_id is not None:  # GROUPED: sent inside that execution
        facts.insert(1, ("digest", link("/executions/" + part(found.digest_id), found.digest_id)))
    variables = [f"<tr><td><code>${{{escape(k)}}}</code></td>"
                 f"<td><code>{escape(redact(_text(v)))}</code></td></tr>"
                 for k, v in sorted(found.context.items())]
    shown = preview.for_execution(settings, found)
    if isinstance(shown, str):
        sent = f"<p class=warn>{escape(shown)}</p>"
    else:
        sent = ("".join(f"<p class=warn>{escape(w)}</p>" for w in shown.warnings)
                + f"<pre>{escape(shown.text())}</pre>")
    rows = [f"<tr><td class=n>{t.number}</td><td>{when(t.started_at)}</td>"
            f"<td class=n>{t.duration_ms:.0f} ms</td><td>{t.status or '–'}</td>"
            f"<td>{escape(t.error or '')}</td>"
            f"<td><pre>{escape(t.response or '')}</pre></td></tr>" for t in attempts]
    picture = _picture(console, found.automation, found.context)
    actions = ""
    if found.integration is not None and found.digest_id is None:
        # PENDING too: one waiting hours for its next retry can be sent now.
        actions = ("<p>" + button(f"/executions/{part(found.id)}/redeliver",
                                  "redeliver now (same webhook-id)", console.guard.token)
                   + "</p>")
    body = (
        "<dl>" + "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in facts) + "</dl>" + actions
        + picture
        + "<h2>Variables</h2>"
        + table(["variable", "value"], variables, "none recorded")
        + '<h2>Request <span class="meta">· as the next attempt sends it, secrets masked'
          "</span></h2>" + sent
        + "<h2>Attempts</h2>"
        + table(["#", "started", "#duration", "status", "error", "response (first 1 KiB)"],
                rows, "no attempt yet"))
    return html(page(f"Execution {found.id}", "/executions", body, console.flash(request)))


def _picture(console: Console, automation: str, context: dict[str, Any]) -> str:
    """A metric firing's window (the values its condition saw, oldest first) drawn
    against the threshold, when the running automation still states that condition."""
    values = context.get("metric_values")
    if not isinstance(values, list) or not values or \
            not all(isinstance(v, int | float) for v in values):
        return ""
    threshold = None
    found = console.daemon.settings.automation(automation)
    checker = found.run.metric if found is not None and found.run is not None else None
    if checker is not None and checker.description == context.get("metric_filter"):
        value = getattr(checker, "threshold", None)
        threshold = float(value) if isinstance(value, int | float) else None
    name = str(context.get("metric_name") or "metric")
    return (f"<h2>What the condition saw <span class=meta>· {escape(name)}, oldest first: "
            f"{escape(str(context.get('metric_filter') or ''))}</span></h2>"
            + charts.line([float(v) for v in values], threshold,
                          f"{name}: the values the condition saw"))


def _text(value: object) -> str:
    return value if isinstance(value, str) else msgspec.json.encode(value).decode()
