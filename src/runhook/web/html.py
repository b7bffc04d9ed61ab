"""The console's page frame and the helpers every page renders with: escaping, times
with their zone, state badges, links. Every value from outside goes through `escape`
(run names, payloads and responses are hostile input)."""

from __future__ import annotations

from datetime import datetime
from html import escape
from urllib.parse import quote, urlencode

from runhook.core.clock import local_time

STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:0;color:#1d2330;background:#f7f8fa}
main{margin:1.2rem 2rem 3rem}nav{background:#1d2330;padding:.6rem 2rem}
nav a{color:#dfe3ea;margin-right:1.2rem;text-decoration:none;font-weight:600}
nav a.here{color:#fff;border-bottom:2px solid #7aa2ff}
h1{font-size:1.4rem;margin:0 0 .2rem}h2{font-size:1.05rem;margin:1.6rem 0 .5rem}
.meta{color:#667}table{border-collapse:collapse;width:100%;background:#fff;
box-shadow:0 1px 2px #0001}th,td{text-align:left;padding:.4rem .6rem;
border-bottom:1px solid #e6e8ee;vertical-align:top}
th{font-size:.75rem;text-transform:uppercase;letter-spacing:.04em;color:#667}
code,pre{font:12px ui-monospace,monospace}pre{background:#fff;padding:.7rem;overflow:auto;
box-shadow:0 1px 2px #0001;white-space:pre-wrap;word-break:break-all;margin:0}
.s{display:inline-block;padding:0 .45rem;border-radius:.6rem;font-size:.75rem;font-weight:600}
.FINISHED,.ok{background:#dff5e3;color:#17692b}.FAILED,.bad{background:#fde2e1;color:#a3201a}
.PENDING{background:#e6efff;color:#1f4fb0}.SKIPPED,.off{background:#eee;color:#555}
.GROUPED{background:#f0e8ff;color:#5b2a9e}
.n{text-align:right;font-variant-numeric:tabular-nums}.t{white-space:nowrap}
a{color:#1f4fb0}form.inline{display:inline}button{font:inherit;padding:.15rem .7rem;
cursor:pointer}.flash{background:#fff7d6;padding:.5rem .8rem;margin:.8rem 0;border-left:4px
solid #e0b400}.filters{display:flex;gap:.6rem;flex-wrap:wrap;align-items:end;margin:.5rem 0 1rem}
.filters label{display:flex;flex-direction:column;font-size:.75rem;color:#667}
.pager{margin:.8rem 0}.pager a{margin-right:1rem}dl{display:grid;grid-template-columns:
max-content auto;gap:.2rem 1rem;background:#fff;padding:.7rem;box-shadow:0 1px 2px #0001}
dt{color:#667}dd{margin:0}.warn{color:#a35b00}
td{overflow-wrap:break-word}.id{overflow-wrap:anywhere}.s{white-space:nowrap}td .t{white-space:normal}h3{font-size:.95rem;margin:1rem 0 .3rem}
svg.chart{display:block;max-width:100%;height:auto;margin:.3rem 0;box-shadow:0 1px 2px #0001}
@media (max-width:1100px){main{margin:1rem .8rem 2rem}nav{padding:.6rem .8rem}
th,td{padding:.3rem .35rem}body{font-size:13px}td code{font-size:11px}}
"""

PAGES = (("/", "Overview"), ("/automations", "Automations"), ("/executions", "Executions"),
         ("/runs", "Runs"), ("/integrations", "Integrations"))


def page(title: str, here: str, body: str, flash: str | None = None,
         refresh: int | None = None) -> str:
    """A whole page. `title` and `flash` are escaped here; `body` is HTML already."""
    nav = "".join(f'<a href="{href}"{" class=here" if href == here else ""}>{name}</a>'
                  for href, name in PAGES)
    note = f'<p class="flash" role="status">{escape(flash)}</p>' if flash else ""
    meta = f'<meta http-equiv="refresh" content="{refresh}">' if refresh else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">{meta}
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)} · runhook</title><style>{STYLE}</style></head><body>
<nav>{nav}</nav><main><h1>{escape(title)}</h1>{note}
{body}
</main></body></html>"""


def when(ts: float | None) -> str:
    """A time in the daemon's zone, with the zone's name and offset said, inside a
    <time> that carries it in UTC for machines."""
    if not ts:
        return "–"
    local = datetime.fromtimestamp(ts).astimezone()
    shown = local_time(ts)
    return f'<time class="t" datetime="{local.isoformat(timespec="seconds")}">{shown}</time>'


def badge(text: str, cls: str | None = None) -> str:
    return f'<span class="s {escape(cls or text)}">{escape(text)}</span>'


def link(path: str, text: str, **query: str | None) -> str:
    return f'<a href="{escape(url(path, **query))}">{escape(text)}</a>'


def run_cell(run_id: str, name: str) -> str:
    """A run's name, linked to its page (by id: names repeat, ids do not)."""
    return link("/runs/" + part(run_id), name or run_id)


def group_cell(group: str | None) -> str:
    """A group, linked to the runs in it."""
    return link("/runs", group, group=group) if group else ""


def url(path: str, **query: str | None) -> str:
    """A console URL; each path part of `path` is already quoted by the caller."""
    pairs = {k: v for k, v in query.items() if v not in (None, "")}
    return path + ("?" + urlencode(pairs) if pairs else "")


def part(value: str) -> str:
    """A value as one path segment (an automation named "a/b" stays one segment)."""
    return quote(value, safe="")


def button(action: str, label: str, token: str, fields: dict[str, str] | None = None) -> str:
    """A POST form with the CSRF token: the console's only way to change anything."""
    hidden = "".join(f'<input type="hidden" name="{escape(k)}" value="{escape(v)}">'
                     for k, v in (fields or {}).items())
    return (f'<form class="inline" method="post" action="{escape(action)}">'
            f'<input type="hidden" name="csrf" value="{escape(token)}">{hidden}'
            f'<button type="submit">{escape(label)}</button></form>')


def table(headers: list[str], rows: list[str], empty: str) -> str:
    head = "".join(f'<th{" class=n" if h.startswith("#") else ""}>{escape(h.lstrip("#"))}</th>'
                   for h in headers)
    body = "".join(rows) or f'<tr><td colspan="{len(headers)}">{escape(empty)}</td></tr>'
    return f"<table><tr>{head}</tr>{body}</table>"
