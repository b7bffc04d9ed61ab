"""`/executions/ID`: one execution: its event's variables, the request it sends (built
as at send time, every secret masked), and every attempt with what the endpoint said."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec
from aiohttp import web

from runhook.delivery import preview
from runhook.web import charts
from runhook.web.html import page
from runhook.web.views import Console, html, not_found


async def execution(console: Console, request: web.Request) -> web.Response:
    execution_id = request.match_info["id"]
    found = await console.store.execution(execution_id)
    if found is None:
        return not_found(f"no execution {execution_id!r}")
    settings = console.daemon.settings
    redact = settings.redactor
    attempts = await console.store.attempts(found.id)
    shown = preview.for_execution(settings, found)
    # A string: why the request cannot be built; otherwise the request and its warnings.
    warnings, sent = ([shown], None) if isinstance(shown, str) else (shown.warnings,
                                                                     shown.text())
    return html(page(
        "execution.html", f"Execution {found.id}", "/executions", console.flash(request),
        e=found, token=console.guard.token, picture=_picture(console, found.automation,
                                                             found.context),
        variables=[(k, redact(_text(v))) for k, v in sorted(found.context.items())],
        warnings=warnings, request=sent, attempts=attempts))


@dataclass(frozen=True, slots=True)
class Picture:
    name: str
    filter: str
    chart: charts.Line | None


def _picture(console: Console, automation: str, context: dict[str, Any]) -> Picture | None:
    """A metric firing's window (the values its condition saw, oldest first) drawn
    against the threshold, when the running automation still states that condition."""
    values = context.get("metric_values")
    if not isinstance(values, list) or not values or \
            not all(isinstance(v, int | float) for v in values):
        return None
    threshold = None
    found = console.daemon.settings.automation(automation)
    checker = found.run.metric if found is not None and found.run is not None else None
    if checker is not None and checker.description == context.get("metric_filter"):
        value = getattr(checker, "threshold", None)
        threshold = float(value) if isinstance(value, int | float) else None
    name = str(context.get("metric_name") or "metric")
    return Picture(name, str(context.get("metric_filter") or ""),
                   charts.line([float(v) for v in values], threshold,
                               f"{name}: the values the condition saw"))


def _text(value: object) -> str:
    return value if isinstance(value, str) else msgspec.json.encode(value).decode()
