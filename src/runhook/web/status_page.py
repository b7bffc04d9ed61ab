"""The status page: plain server-rendered HTML that refreshes itself, no JavaScript."""

from __future__ import annotations

from datetime import datetime
from html import escape

from runhook.core.executions import STATES
from runhook.ingest.queries import Overview

REFRESH_S = 5

STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:2rem;color:#1d2330;background:#f7f8fa}
h1{font-size:1.4rem;margin:0 0 .2rem}h2{font-size:1.05rem;margin:2rem 0 .5rem}
.meta{color:#667}table{border-collapse:collapse;width:100%;background:#fff;
box-shadow:0 1px 2px #0001}th,td{text-align:left;padding:.4rem .6rem;
border-bottom:1px solid #e6e8ee;
vertical-align:top}th{font-size:.75rem;text-transform:uppercase;letter-spacing:.04em;color:#667}
code{font:12px ui-monospace,monospace}.s{display:inline-block;padding:0 .45rem;border-radius:.6rem;
font-size:.75rem;font-weight:600}.FINISHED,.ok{background:#dff5e3;color:#17692b}
.FAILED,.bad{background:#fde2e1;color:#a3201a}.PENDING{background:#e6efff;color:#1f4fb0}
.SKIPPED,.off{background:#eee;color:#555}.n{text-align:right;font-variant-numeric:tabular-nums}
.att{color:#556;font-size:.8rem}.t{white-space:nowrap}
"""


def _when(ts: float | None) -> str:
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S") if ts else "–"


def _badge(text: str, cls: str | None = None) -> str:
    return f'<span class="s {escape(cls or text)}">{escape(text)}</span>'


def _filters(run_name: str | None, group: str | None, collection: str | None) -> str:
    return ", ".join(f"{name} ~ {value}" for name, value in (
        ("run_name", run_name), ("group", group), ("collection", collection))
        if value is not None) or "every firing"


def render(status: Overview) -> str:
    rows_a = []
    for a in status.automations:
        last = a.last
        last_cell = (f'{_badge(last.state)} <span class="meta t">{_when(last.created_at)}'
                     f'</span>') if last else '<span class="meta">never</span>'
        rows_a.append(
            f"<tr><td><b>{escape(a.name)}</b></td><td>{escape(a.kind)}</td>"
            f"<td><code>{escape(a.scope)}</code></td>"
            f"<td>{_badge('enabled', 'ok') if a.enabled else _badge('disabled', 'off')}</td>"
            f"<td>{last_cell}</td>"
            + "".join(f'<td class="n">{a.counts_24h.get(s, 0)}</td>' for s in STATES) + "</tr>")
    rows_i = []
    for i in status.integrations:
        health = _badge("disabled", "bad") if i.disabled else (
            _badge("failing", "bad") if i.last_error and not i.sent else _badge("ok", "ok"))
        rows_i.append(
            f"<tr><td><b>{escape(i.name)}</b></td><td>{escape(i.kind)}</td><td>{health}</td>"
            f"<td>{escape(i.rate or 'unlimited')}</td><td class='n'>{i.sent}</td>"
            f"<td class='n'>{i.in_flight}</td>"
            f"<td>{escape(i.disabled or i.last_error or '–')}</td></tr>")
    rows_e = []
    for e in status.recent:
        attempts = "<br>".join(
            f"#{t.number} {_when(t.started_at)} · {t.status or '–'} · "
            f"{t.duration_ms:.0f} ms{(' · ' + escape(t.error)) if t.error else ''}"
            for t in e.attempt_list) or "–"
        rows_e.append(
            f"<tr><td class='t'>{_when(e.created_at)}</td>"
            f"<td><code>{escape(e.id)}</code></td>"
            f"<td>{escape(e.automation)}</td><td>{escape(e.event_kind)}</td>"
            f"<td>{_badge(e.state)}</td><td class='att'>{attempts}</td>"
            f"<td>{escape(e.reason or '')}</td></tr>")
    rows_s = [
        f"<tr><td><code>{escape(v.id)}</code></td>"
        f"<td>{escape(v.automation or 'all automations')}</td>"
        f"<td>{escape(_filters(v.run_name, v.group, v.collection))}</td>"
        f"<td class='t'>{_when(v.ends_at)}</td><td>{escape(v.comment)}</td></tr>"
        for v in status.silences]
    received = sum(status.events_received.values())
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="refresh" content="{REFRESH_S}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>runhook status</title><style>{STYLE}</style></head><body>
<h1>runhook</h1>
<p class="meta">version {escape(status.version)} · up {status.uptime_s:.0f}s ·
config <code>{escape(status.config)}</code> · {received} events received ·
{status.lines_rejected} lines rejected · {status.connections} connections ·
{status.scopes} scopes · {status.tracked_runs} runs tracked ·
refreshes every {REFRESH_S}s</p>
<h2>Automations <span class="meta">· executions over the last 24 h</span></h2>
<table><tr><th>name</th><th>event</th><th>scope</th><th></th><th>last execution</th>
{''.join(f'<th class="n">{s.lower()}</th>' for s in STATES)}</tr>
{''.join(rows_a) or '<tr><td colspan="9">none configured</td></tr>'}</table>
<h2>Silences <span class="meta">· matching firings are recorded SKIPPED, not sent</span></h2>
<table><tr><th>silence</th><th>automation</th><th>filters</th><th>until</th><th>comment</th></tr>
{''.join(rows_s) or '<tr><td colspan="5">none active</td></tr>'}</table>
<h2>Integrations</h2>
<table><tr><th>name</th><th>kind</th><th>health</th><th>rate</th><th class="n">sent</th>
<th class="n">in flight</th><th>last error</th></tr>
{''.join(rows_i) or '<tr><td colspan="7">none configured</td></tr>'}</table>
<h2>Recent executions</h2>
<table><tr><th>created</th><th>execution</th><th>automation</th><th>event</th><th>state</th>
<th>attempts</th><th>reason</th></tr>
{''.join(rows_e) or '<tr><td colspan="7">none yet</td></tr>'}</table>
</body></html>
"""
