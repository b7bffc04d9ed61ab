"""`/automations` and `/automations/NAME`: each automation's definition (scope, kind,
filters, window, cooldown, action), its counts and its recent executions."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import msgspec
from aiohttp import web

from runhook.core.durations import describe
from runhook.core.executions import STATES
from runhook.store.reads import Filters
from runhook.web import charts
from runhook.web.html import page
from runhook.web.views import Console, html, not_found

# The automation page counts up to this many of its last day's executions, as `/`
# does (measured on 2 M executions: 100 000 took 170 ms, 10 000 under 20 ms).
COUNT_CAP = 10_000
RECENT = 20


async def automations(console: Console, request: web.Request) -> web.Response:
    rows = []
    for a in console.daemon.settings.automations:
        event = _fields(console, a.index, "event")
        filters = ", ".join(f"{k} = {v}" for k, v in event.items() if k != "kind") or "–"
        rows.append({"a": a, "filters": filters, "cooldown": describe(a.cooldown)})
    return html(page("automations.html", "Automations", "/automations",
                     console.flash(request), rows=rows))


async def automation(console: Console, request: web.Request) -> web.Response:
    name = request.match_info["name"]
    found = console.daemon.settings.automation(name)
    if found is None:
        return not_found(f"no automation {name!r} in the running configuration")
    event = _fields(console, found.index, "event")
    action = _fields(console, found.index, "action")
    condition = None
    if found.run is not None and (found.run.metric or found.run.state):
        checker = found.run.metric or found.run.state
        condition = getattr(checker, "description", "")
    per = " per run" if found.run is not None else " per collection"
    spec = found.digest_spec
    description = console.daemon.settings.config.automations[found.index].description
    now = time.time()
    counts = await console.store.counts(name, now - 86400, COUNT_CAP)
    hours = await console.store.per_hour(name, now - 86400, COUNT_CAP)
    total = sum(counts.values())
    recent = await console.store.page(Filters(automation=name), RECENT)
    return html(page(
        "automation.html", f"Automation {name}", "/automations", console.flash(request),
        a=found, description=description, condition=condition,
        event=[(k, _value(v)) for k, v in event.items() if k != "kind"],
        cooldown=describe(found.cooldown) + per,
        digest_window=describe(spec.window) if spec is not None else None,
        digest_by=", ".join(spec.by) if spec is not None else "",
        action=[(k, _value(v)) for k, v in action.items()],
        total=total, cap=COUNT_CAP,
        count_text=" · ".join(f"{s.lower()} {counts.get(s, 0)}" for s in STATES),
        firings=_firings(hours, now) if total else None, recent=recent))


def _firings(hours: dict[int, int], now: float) -> charts.Bars | None:
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
