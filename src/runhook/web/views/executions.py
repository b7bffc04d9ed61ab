"""`/executions`: the history, filtered by automation, state, run (name or id), group and
collection (prefixes) and time range, newest first, in keyset pages (a page costs its rows on any history)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import msgspec
from aiohttp import web

from runhook.core.clock import zone_name
from runhook.core.executions import STATES
from runhook.store.reads import Filters
from runhook.store.rows import Execution
from runhook.web.html import page
from runhook.web.views import Console, html

PAGE_ROWS = 50
MOST_ROWS = 500
FIELDS = ("automation", "state", "run", "collection", "group", "since", "until", "rows")


class BadFilter(ValueError):
    pass


async def executions(console: Console, request: web.Request) -> web.Response:
    query = request.query
    try:
        filters = _filters(query)
        before = _cursor(query.get("before"))
        after = _cursor(query.get("after")) if before is None else None
        size = _rows(query.get("rows"))
    except BadFilter as exc:
        return html(page("executions.html", "Executions", "/executions", error=str(exc),
                         **_form(console, query)), 400)
    if filters.run is not None and await console.store.has_run(filters.run):
        # A whole run id (the Runs page links here with one): the run index serves
        # it, where a prefix of an id or a name walks the history by time.
        filters = msgspec.structs.replace(filters, run=None, run_id=filters.run)
    rows = await console.store.page(filters, size + 1, before=before, after=after)
    # One row more than a page says whether there is a page beyond, in the direction read.
    more = len(rows) > size
    rows = (rows[-size:] if after is not None else rows[:size]) if more else rows
    kept = {k: query.get(k) for k in FIELDS}
    newer = older = None
    if rows and (before is not None or (after is not None and more)):
        newer = {**kept, "after": _key(rows[0])}
    if rows and ((after is None and more) or after is not None):
        older = {**kept, "before": _key(rows[-1])}
    return html(page("executions.html", "Executions", "/executions", console.flash(request),
                     error=None, rows=rows, newer=newer, older=older,
                     **_form(console, query)))


def _key(e: Execution) -> str:
    return f"{e.created_at!r}_{e.id}"


def _rows(value: str | None) -> int:
    if not value:
        return PAGE_ROWS
    if not value.isdigit() or not 1 <= int(value) <= MOST_ROWS:
        raise BadFilter(f"rows: a whole number from 1 to {MOST_ROWS}")
    return int(value)


def _cursor(value: str | None) -> tuple[float, str] | None:
    if not value:
        return None
    stamp, _, execution_id = value.partition("_")
    try:
        return float(stamp), execution_id
    except ValueError:
        raise BadFilter("a page link that is not one of ours") from None


def _filters(query: Mapping[str, str]) -> Filters:
    state = query.get("state") or None
    if state is not None and state not in STATES:
        raise BadFilter(f"state must be one of {', '.join(STATES)}")
    return Filters(automation=query.get("automation") or None, state=state,
                   run=query.get("run") or None,
                   collection=query.get("collection") or None,
                   group=query.get("group") or None,
                   since=_time(query.get("since"), "since"),
                   until=_time(query.get("until"), "until"))


def _time(value: str | None, name: str) -> float | None:
    """A datetime-local value (read in the daemon's zone) or RFC 3339 with its zone."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise BadFilter(f"{name}: expected a time such as 2026-11-27T09:30") from None
    try:
        if parsed.tzinfo is None:
            parsed = parsed.astimezone()  # the daemon's zone, as the form says
        return parsed.timestamp()
    except (OverflowError, ValueError, OSError):  # year 1 in a zone east of UTC: a 500
        raise BadFilter(f"{name}: {value!r} is out of range") from None


def _form(console: Console, query: Mapping[str, str]) -> dict[str, Any]:
    """What the filter form shows: the automations to choose from, the states, and the
    boxes (name, label, input type), each filled in from the query."""
    zone = zone_name()
    return {"query": query, "names": [a.name for a in console.daemon.settings.automations],
            "chosen": query.get("automation") or "", "states": STATES,
            "boxes": [("run", "run name or id", "text"), ("group", "group", "text"),
                      ("collection", "collection", "text"),
                      ("since", f"since ({zone})", "datetime-local"),
                      ("until", f"until ({zone})", "datetime-local")]}
