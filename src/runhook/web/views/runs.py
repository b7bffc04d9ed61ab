"""`/runs` and `/runs/ID`: the runs the scopes' books hold now: state, last sign of
life, group, the next crash or stall deadline, and the watched metrics' windows.
The books are read without an await between reading and rendering (the scope
actors run on this event loop, so nothing changes under the read), never changed."""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from html import escape
from typing import Any

from aiohttp import web

from runhook.evaluate.run import Run
from runhook.evaluate.runbook import RunBook
from runhook.store.reads import Filters
from runhook.triggers.state import RUNNING
from runhook.web import charts
from runhook.web.html import badge, group_cell, link, page, run_cell, table, url, when
from runhook.web.views import Console, html
from runhook.web.views.executions import row

MOST_RUNS = 500  # rows on /runs: the most recently seen first
SHOWN_VALUES = 12  # window values written out per metric on /runs
DRAWN_VALUES = 500  # on a run's page: a window may hold thousands
RECENT = 20


@dataclass(frozen=True, slots=True)
class Held:
    """One run in one scope's book, with what turns its monotonic readings into
    wall times (the actor's clock: wall - monotonic, now)."""

    scope: str
    run: Run
    book: RunBook
    offset: float

    def wall(self, reading: float) -> float:
        return reading + self.offset


def _held(console: Console) -> Iterator[Held]:
    """Every run of every scope actor (cluster mode: of the partitions owned here)."""
    scopes = getattr(console.daemon, "scopes", None)
    actors: Mapping[Any, Any] = getattr(scopes, "actors", None) or {}
    for actor in list(actors.values()):
        clock = actor.clock
        offset = clock.wall() - clock.monotonic()
        book: RunBook = actor.book
        for run in book.runs.values():
            yield Held(actor.scope, run, book, offset)


def deadlines(held: Held) -> list[tuple[str, float]]:
    """The run's next crash and stall deadlines (wall times), as the book's health
    checks compute them when their timers pop (evaluate/health.py)."""
    run, book = held.run, held.book
    care = run.care
    if care is None or run.state != RUNNING:
        return []
    out = [("crashed if silent until", held.wall(max(run.last_seen, book.started)
                                                 + care.timeout))]
    for automation, stall in care.stalls:
        if run.active is not None and automation.name in run.active:
            continue  # fired already, waiting for values to resume
        since = (run.values_at or {}).get(stall.metric or "", book.started)
        out.append((f"{automation.name} fires at",
                    held.wall(max(since, book.started) + stall.span)))
    return sorted(out, key=lambda d: d[1])


def _conditions(run: Run, metric: str) -> list[tuple[str, float | None]]:
    """(condition in words, its threshold if it has one) of each automation that
    watches `metric` for this run."""
    found = run.watch.get(metric)
    if not found:
        return []
    out = []
    for automation, checker, _ in found[1]:
        threshold = getattr(checker, "threshold", None)
        out.append((f"{automation.name}: {checker.description}",
                    threshold if isinstance(threshold, float | int) else None))
    return out


def _number(value: float) -> str:
    return f"{value:.6g}" if math.isfinite(value) else str(value)


def run_name(run: Run) -> str:
    return run.name or run.run_id


def _matches(held: Held, run_prefix: str, group_prefix: str) -> bool:
    run = held.run
    return (run.run_id.startswith(run_prefix) or run.name.startswith(run_prefix)) and \
        (not group_prefix or (run.group or "").startswith(group_prefix))


async def runs(console: Console, request: web.Request) -> web.Response:
    query = request.query
    run_prefix, group_prefix = query.get("run", ""), query.get("group", "")
    # Synchronous from here to the response: the books cannot change under the read.
    chosen = heapq.nlargest(MOST_RUNS, (h for h in _held(console)
                                        if _matches(h, run_prefix, group_prefix)),
                            key=lambda h: h.run.last_seen)
    rows = []
    for held in chosen:
        run = held.run
        next_ = deadlines(held)
        metrics = "<br>".join(
            f"<code>{escape(metric)}</code> "
            + escape(" ".join(_number(v) for v in ring.tail(SHOWN_VALUES)))
            for metric, ring in sorted(run.rings.items()))
        rows.append(
            f"<tr><td>{run_cell(run.run_id, run_name(run))}</td>"
            f"<td><code>{escape(held.scope)}</code></td>"
            f"<td>{badge(run.state or 'unknown', 'ok' if run.state == RUNNING else 'off')}"
            f"</td><td>{when(held.wall(run.last_seen))}</td>"
            f"<td>{group_cell(run.group)}</td>"
            f"<td>{escape(next_[0][0]) + ' ' + when(next_[0][1]) if next_ else '–'}</td>"
            f"<td>{metrics or '–'}</td></tr>")
    form = (f'<form class="filters" method="get" action="{url("/runs")}">'
            f'<label>run name or id (prefix)<input name="run" value="{escape(run_prefix)}">'
            f'</label><label>group (prefix)<input name="group" value="{escape(group_prefix)}">'
            '</label><button type="submit">filter</button></form>')
    body = (form + '<p class="meta">Runs the daemon holds in memory now: those a run '
            "automation watches, kept an hour after they end. Most recently seen first"
            f" (at most {MOST_RUNS}).</p>"
            + table(["run", "scope", "state", "last seen", "group", "next deadline",
                     "watched metrics (window, oldest first)"], rows, "no runs held")
            )
    return html(page("Runs", "/runs", body, console.flash(request), refresh=30))


async def run(console: Console, request: web.Request) -> web.Response:
    run_id = request.match_info["id"]
    recent = await console.store.page(Filters(run_id=run_id), RECENT)
    # No await from here on: the books are read and rendered in one step.
    found = [h for h in _held(console) if h.run.run_id == run_id]
    title = f"Run {run_name(found[0].run) if found else run_id}"
    sections = []
    for held in found:
        sections.append(_one(held))
    if not found:
        sections.append("<p>Not held in memory now: no run automation watches it, or it "
                        "ended over an hour ago. Its executions are below.</p>")
    body = ("".join(sections)
            + f"<h2>Executions <span class=meta>· "
            f"{link('/executions', 'all of them', run=run_id)}</span></h2>"
            + table(["created", "execution", "automation", "event", "run, group or artifact",
                     "state", "#tries", "reason"], [row(e) for e in recent],
                    "no executions for this run"))
    return html(page(title, "/runs", body, console.flash(request)))


def _one(held: Held) -> str:
    run = held.run
    facts = [("scope", f"<code>{escape(held.scope)}</code>"),
             ("run id", f"<code>{escape(run.run_id)}</code>"),
             ("name", escape(run.name or "–")),
             ("state", badge(run.state or "unknown", "ok" if run.state == RUNNING else "off")
              + (f" {escape(run.reason)}" if run.reason else "")),
             ("last seen", when(held.wall(run.last_seen))),
             ("group", group_cell(run.group) or "–"),
             ("user", escape(run.user or "–"))]
    if run.ended_at is not None:
        facts.append(("ended", when(held.wall(run.ended_at))))
    facts += [(name, when(at)) for name, at in deadlines(held)]
    if run.active:
        facts.append(("conditions holding", escape(", ".join(sorted(run.active)))))
    metrics = []
    for metric, ring in sorted(run.rings.items()):
        values = ring.tail(DRAWN_VALUES)
        conditions = _conditions(run, metric)
        threshold = next((t for _, t in conditions if t is not None), None)
        metrics.append(
            f"<h3><code>{escape(metric)}</code> <span class=meta>· window of {ring.size}, "
            f"{ring.count} held" + (f", the last {len(values)} shown" if len(values) < ring.count
                                 else "") + "</span></h3>"
            + "".join(f"<p>{escape(text)}</p>" for text, _ in conditions)
            + charts.line(values, threshold, f"{metric}: the window's values")
            + f"<p><code>{escape(' '.join(_number(v) for v in values))}</code></p>")
    return ("<dl>" + "".join(f"<dt>{escape(k)}</dt><dd>{v}</dd>" for k, v in facts) + "</dl>"
            + "<h2>Watched metrics</h2>" + ("".join(metrics) or "<p>none</p>"))
