"""`/executions`: the history, filtered by automation, state, run (name or id), group and
collection (prefixes) and time range, newest first, in keyset pages (a page costs its rows on any history)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from html import escape

import msgspec
from aiohttp import web

from runhook.core.clock import zone_name
from runhook.core.executions import STATES
from runhook.store.reads import Filters
from runhook.store.rows import Execution
from runhook.web.html import badge, group_cell, link, page, part, run_cell, table, url, when
from runhook.web.views import Console, html

PAGE_ROWS = 50
MOST_ROWS = 500
FIELDS = ("automation", "state", "run", "collection", "group", "since", "until", "rows")
HEADERS = ["created", "execution", "automation", "event", "run, group or artifact", "state",
           "#tries", "reason"]


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
    if filters.run is not None and await console.store.has_run(filters.run):
        # A whole run id (the Runs page links here with one): the run index serves
        # it, where a prefix of an id or a name walks the history by time.
        filters = msgspec.structs.replace(filters, run=None, run_id=filters.run)
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
            + table(HEADERS, [row(e) for e in rows], "no executions match")
            + f'<p class="pager">{" ".join(pager)}</p>')
    return html(page("Executions", "/executions", body, console.flash(request)))


def row(e: Execution) -> str:
    """One execution as a list row; each cell that names something links to it."""
    # Ids and event kinds may break anywhere: they are what overflowed at 900 px.
    return (f"<tr><td>{when(e.created_at)}</td>"
            f"<td class=id>{link('/executions/' + part(e.id), e.id)}"
            f"</td><td>{link('/automations/' + part(e.automation), e.automation)}</td>"
            f"<td class=id>{escape(e.event_kind)}</td>"
            f"<td>{subject(e)}</td><td>{badge(e.state)}</td>"
            f"<td class=n>{e.attempts}</td><td>{escape(e.reason or '')}</td></tr>")


def subject(e: Execution) -> str:
    """What the execution is about: its run (and the run's group), the group a
    GROUP_FINISHED or a digest by group is about, or the artifact version."""
    context = e.context
    parts = []
    name = context.get("run_name")
    if e.run_id:
        parts.append(run_cell(e.run_id, str(name or e.run_id)))
    elif name:
        parts.append(escape(str(name)))
    group = context.get("run_group") or context.get("group")
    if isinstance(group, str) and group:
        parts.append(f"<span class=meta>group</span> {group_cell(group)}")
    count = context.get("digest_count")
    if count is not None and not parts:
        key = context.get("digest_key") or ""
        parts.append(f"<span class=meta>digest of {escape(str(count))}</span>"
                     + (f" <code>{escape(str(key))}</code>" if key else ""))
    version = context.get("artifact_version")
    if version:
        collection = context.get("artifact_collection_name")
        parts.append(link("/executions", str(version), collection=str(collection))
                     if collection else escape(str(version)))
    return "<br>".join(parts)


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
            + box("run", "run name or id") + box("group", "group")
            + box("collection", "collection")
            + box("since", f"since ({zone})", "datetime-local")
            + box("until", f"until ({zone})", "datetime-local")
            + '<button type="submit">filter</button></form>')
