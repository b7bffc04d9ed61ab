"""The console's template environment (web/templates/, Jinja2 with autoescape) and the
few helpers its pages compute with: URLs, times with their zone, what an execution is
about. Run names, payloads and responses are hostile input: no page writes HTML from
a value; every `{{ value }}` a template prints is escaped on its way out."""

from __future__ import annotations

import html
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlencode

import jinja2
from markupsafe import Markup

from runhook.core.clock import local_time
from runhook.store.rows import Execution
from runhook.web import charts

PAGES = (("/", "Overview"), ("/automations", "Automations"), ("/executions", "Executions"),
         ("/runs", "Runs"), ("/integrations", "Integrations"))


def _escaped(value: object) -> object:
    """What every `{{ value }}` prints: escaped, as `html.escape` spells it (`&quot;`,
    `&#x27;`: what the console always sent, and what scripts reading its pages expect),
    so the autoescape after it finds Markup and leaves it. Markup made by a macro (its
    own values escaped inside it) passes as it is."""
    if hasattr(value, "__html__"):
        return value
    return Markup(html.escape(str(value)))


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts).astimezone().isoformat(timespec="seconds")


def url(path: str, **query: str | None) -> str:
    """A console URL; each path part of `path` is already quoted by the caller."""
    pairs = {k: v for k, v in query.items() if v not in (None, "")}
    return path + ("?" + urlencode(pairs) if pairs else "")


def part(value: str) -> str:
    """A value as one path segment (an automation named "a/b" stays one segment)."""
    return quote(value, safe="")


def subject(e: Execution) -> list[tuple[str, ...]]:
    """What the execution is about, as (kind, values...) for the `subject` macro: its
    run (and the run's group), the group a GROUP_FINISHED or a digest by group is
    about, or the artifact version."""
    context = e.context
    parts: list[tuple[str, ...]] = []
    name = context.get("run_name")
    if e.run_id:
        parts.append(("run", e.run_id, str(name or e.run_id)))
    elif name:
        parts.append(("text", str(name)))
    group = context.get("run_group") or context.get("group")
    if isinstance(group, str) and group:
        parts.append(("group", group))
    count = context.get("digest_count")
    if count is not None and not parts:
        parts.append(("digest", str(count), str(context.get("digest_key") or "")))
    version = context.get("artifact_version")
    if version:
        collection = context.get("artifact_collection_name")
        parts.append(("version", str(version), str(collection) if collection else ""))
    return parts


# Autoescape on for every template, whatever its name; StrictUndefined: a name a view
# forgot to pass is an error in the test, not an empty cell. Templates are package data
# (pyproject's package-data carries them into the wheel).
ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("runhook.web", "templates"),
    autoescape=True,
    finalize=_escaped,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    auto_reload=False,
)
ENV.filters.update(iso=_iso, local_time=local_time, part=part)
ENV.globals.update(pages=PAGES, url=url, subject_parts=subject,
                   chart_size=(charts.WIDTH, charts.HEIGHT, charts.PAD))


def page(template: str, title: str, here: str, flash: str | None = None,
         refresh: int | None = None, **context: Any) -> str:
    """A whole page: `template` extends base.html, which frames it with `title`, the nav
    (`here` shown current), the flash message and the refresh interval."""
    return ENV.get_template(template).render(title=title, here=here, flash=flash,
                                             refresh=refresh, **context)
