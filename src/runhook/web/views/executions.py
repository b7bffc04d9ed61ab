"""`/executions`: the history, filtered by automation, state, run, collection and time
range, newest first, in keyset pages (a page costs its rows on any history)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from html import escape

from aiohttp import web

from runhook.core.clock import zone_name
from runhook.core.executions import STATES
from runhook.store.reads import Filters
from runhook.store.rows import Execution
from runhook.web.html import badge, link, page, part, table, url, when
from runhook.web.views import Console, html

PAGE_ROWS = 50
MOST_ROWS = 500
FIELDS = ("automation", "state", "run", "collection", "since", "until", "rows")


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
        return html(page("Executions", "/executions", f"<p class=warn>{escape(str(exc))}</p>"
                         + _form(console, query)), 400)
    rows = await console.store.page(filters, size + 1, before=before, after=after)
    # One row more than a page says whether there is a page beyond, in the direction read.
    more = len(rows) > size
    rows = (rows[-size:] if after is not None else rows[:size]) if more else rows
    kept = {k: query.get(k) for k in FIELDS}
    pager = []
    if rows and (before is not None or (after is not None and more)):
        pager.append(link("/executions", "← newer", **kept, after=_key(rows[0])))
    if rows and ((after is None and more) or after is not None):
        pager.append(link("/executions", "older →", **kept, before=_key(rows[-1])))
    body = (_form(console, query)
            + table(["created", "execution", "automation", "event", "run or artifact", "state",
                     "#tries", "reason"], [_row(e) for e in rows], "no executions match")
            + f'<p class="pager">{" ".join(pager)}</p>')
    return html(page("Executions", "/executions", body, console.flash(request)))


def _row(e: Execution) -> str:
    subject = e.context.get("run_name") or e.run_id or e.context.get("artifact_version") or ""
    return (f"<tr><td>{when(e.created_at)}</td><td>{link('/executions/' + part(e.id), e.id)}"
            f"</td><td>{escape(e.automation)}</td><td>{escape(e.event_kind)}</td>"
            f"<td>{escape(str(subject))}</td><td>{badge(e.state)}</td>"
            f"<td class=n>{e.attempts}</td><td>{escape(e.reason or '')}</td></tr>")


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
                   run_id=query.get("run") or None,
                   collection=query.get("collection") or None,
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


def _form(console: Console, query: Mapping[str, str]) -> str:
    get = query.get
    names = [a.name for a in console.daemon.settings.automations]
    chosen = get("automation") or ""
    options = '<option value="">any</option>' + "".join(
        f'<option{" selected" if n == chosen else ""}>{escape(n)}</option>' for n in names)
    if chosen and chosen not in names:  # one a reload removed: its history stays
        options += f"<option selected>{escape(chosen)}</option>"
    states = '<option value="">any</option>' + "".join(
        f'<option{" selected" if s == get("state") else ""}>{s}</option>' for s in STATES)
    zone = zone_name()

    def box(name: str, label: str, kind: str = "text") -> str:
        return (f'<label>{escape(label)}<input type="{kind}" name="{name}" '
                f'value="{escape(get(name) or "")}"></label>')

    return (f'<form class="filters" method="get" action="{url("/executions")}">'
            f'<label>automation<select name="automation">{options}</select></label>'
            f'<label>state<select name="state">{states}</select></label>'
            + box("run", "run id") + box("collection", "collection")
            + box("since", f"since ({zone})", "datetime-local")
            + box("until", f"until ({zone})", "datetime-local")
            + '<button type="submit">filter</button></form>')
