"""`/automations` and `/automations/NAME`: each automation's definition (scope, kind,
filters, window, cooldown, action), its counts and its recent executions."""

from __future__ import annotations

import time
from datetime import datetime
from html import escape
from typing import Any

import msgspec
from aiohttp import web

from runhook.core.durations import describe
from runhook.core.executions import STATES
from runhook.store.reads import Filters
from runhook.web import charts
from runhook.web.html import badge, link, page, part, table, when
from runhook.web.views import Console, html, not_found
from runhook.web.views.executions import subject

# The automation page counts up to this many of its last day's executions, as `/`
# does (measured on 2 M executions: 100 000 took 170 ms, 10 000 under 20 ms).
COUNT_CAP = 10_000
RECENT = 20


async def automations(console: Console, request: web.Request) -> web.Response:
    rows = []
    for a in console.daemon.settings.automations:
        event = _fields(console, a.index, "event")
        filters = ", ".join(f"{k} = {v}" for k, v in event.items() if k != "kind") or "–"
        rows.append(
            f'<tr><td>{link("/automations/" + part(a.name), a.name)}</td>'
            f"<td>{escape(a.kind)}</td><td><code>{escape(a.scope)}</code></td>"
            f"<td><code>{escape(filters)}</code></td><td>{escape(describe(a.cooldown))}</td>"
            f"<td>{escape(a.action.integration or 'none')}</td>"
            f"<td>{badge('enabled', 'ok') if a.enabled else badge('disabled', 'off')}</td></tr>")
    body = table(["name", "event", "scope", "filters and condition", "cooldown", "integration",
                  ""], rows, "none configured")
    return html(page("Automations", "/automations", body, console.flash(request)))


async def automation(console: Console, request: web.Request) -> web.Response:
    name = request.match_info["name"]
    found = console.daemon.settings.automation(name)
    if found is None:
        return not_found(f"no automation {name!r} in the running configuration")
    event = _fields(console, found.index, "event")
    action = _fields(console, found.index, "action")
    definition = [("scope", f"<code>{escape(found.scope)}</code>"),
                  ("event kind", escape(found.kind))]
    definition += [(k, f"<code>{escape(_value(v))}</code>") for k, v in event.items()
                   if k != "kind"]
    if found.run is not None and (found.run.metric or found.run.state):
        checker = found.run.metric or found.run.state
        definition.append(("condition", escape(getattr(checker, "description", ""))))
    per = " per run" if found.run is not None else " per collection"
    spec = found.digest_spec
    digest = (f"firings within {escape(describe(spec.window))} of the first are sent as one"
              + (f", one digest per {escape(', '.join(spec.by))}" if spec.by else "")
              if spec is not None else "none: each firing is sent on its own")
    definition += [("cooldown", escape(describe(found.cooldown)) + per),
                   ("enabled", "yes" if found.enabled else "no"),
                   ("digest", digest),
                   # What a reload compares to keep this automation's run state.
                   ("definition hash", f"<code>{escape(found.digest)}</code>")]
    definition += [(f"action.{k}", f"<pre>{escape(_value(v))}</pre>" if k == "payload"
                    else f"<code>{escape(_value(v))}</code>") for k, v in action.items()]
    description = console.daemon.settings.config.automations[found.index].description
    now = time.time()
    counts = await console.store.counts(name, now - 86400, COUNT_CAP)
    hours = await console.store.per_hour(name, now - 86400, COUNT_CAP)
    total = sum(counts.values())
    count_text = " · ".join(f"{s.lower()} {counts.get(s, 0)}" for s in STATES)
    recent = await console.store.page(Filters(automation=name), RECENT)
    rows = [f'<tr><td>{when(e.created_at)}</td><td>{link("/executions/" + part(e.id), e.id)}'
            f"</td><td>{badge(e.state)}</td><td>{e.attempts}</td>"
            f"<td>{subject(e)}</td><td>{escape(e.reason or '')}</td></tr>" for e in recent]
    body = (
        (f"<p>{escape(description)}</p>" if description else "")
        + "<h2>Definition</h2><dl>"
        + "".join(f"<dt>{escape(k)}</dt><dd>{v}</dd>" for k, v in definition) + "</dl>"
        + f"<h2>Last 24 h</h2><p>{total}{'+' if total >= COUNT_CAP else ''} execution{'' if total == 1 else 's'}: "
        f"{escape(count_text)}</p>"
        + (_firings(hours, now) if total else "")
        + f"<h2>Recent executions <span class=meta>· "
        f"{link('/executions', 'all of them', automation=name)}</span></h2>"
        + table(["created", "execution", "state", "tries", "run, group or artifact", "reason"],
                rows,
                "no executions yet"))
    return html(page(f"Automation {name}", "/automations", body, console.flash(request)))


def _firings(hours: dict[int, int], now: float) -> str:
    """The last 24 h's executions per hour, as bars (the current hour last)."""
    last = int(now // 3600)
    counts = [(datetime.fromtimestamp(h * 3600).astimezone().strftime("%a %H:00"),
               hours.get(h, 0)) for h in range(last - 23, last + 1)]
    return charts.bars(counts, "executions per hour, the last 24 h")


def _fields(console: Console, index: int, table_name: str) -> dict[str, Any]:
    """The automation's `event` or `action` table as configured, defaults left out."""
    config = console.daemon.settings.config.automations[index]
    value = getattr(config, table_name)
    out: dict[str, Any] = msgspec.to_builtins(value)
    if table_name == "event":
        out = {"kind": value.__struct_config__.tag, **out}
    return {k: v for k, v in out.items() if v is not None}


def _value(value: Any) -> str:
    return value if isinstance(value, str) else msgspec.json.encode(value).decode()
