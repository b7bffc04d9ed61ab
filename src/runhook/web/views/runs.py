"""`/runs` and `/runs/ID`: the runs the scopes' books hold now: state, last sign of
life, group, the next crash or stall deadline, and the watched metrics' windows.
The books are read without an await between reading and rendering (the scope
actors run on this event loop, so nothing changes under the read), never changed."""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from runhook.evaluate.run import TrackedRun
from runhook.evaluate.runbook import RunBook
from runhook.store.reads import Filters
from runhook.triggers.state import RUNNING
from runhook.web import charts
from runhook.web.html import page
from runhook.web.views import Console, html

MOST_RUNS = 500  # rows on /runs: the most recently seen first
SHOWN_VALUES = 12  # window values written out per metric on /runs
DRAWN_VALUES = 500  # on a run's page: a window may hold thousands
RECENT = 20


@dataclass(frozen=True, slots=True)
class Held:
    """One run in one scope's book, with what turns its monotonic readings into
    wall times (the actor's clock: wall - monotonic, now)."""

    scope: str
    run: TrackedRun
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


def _conditions(run: TrackedRun, metric: str) -> list[tuple[str, float | None]]:
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


def run_name(run: TrackedRun) -> str:
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
        rows.append({"held": held, "name": run_name(run), "running": run.state == RUNNING,
                     "next": next_[0] if next_ else None,
                     "metrics": [(metric, " ".join(_number(v) for v in ring.tail(SHOWN_VALUES)))
                                 for metric, ring in sorted(run.rings.items())]})
    return html(page("runs.html", "Runs", "/runs", console.flash(request), refresh=30,
                     run_prefix=run_prefix, group_prefix=group_prefix, most=MOST_RUNS,
                     rows=rows))


async def run(console: Console, request: web.Request) -> web.Response:
    run_id = request.match_info["id"]
    recent = await console.store.page(Filters(run_id=run_id), RECENT)
    # No await from here on: the books are read and rendered in one step.
    found = [h for h in _held(console) if h.run.run_id == run_id]
    title = f"Run {run_name(found[0].run) if found else run_id}"
    return html(page("run.html", title, "/runs", console.flash(request), run_id=run_id,
                     held=[_one(h) for h in found], recent=recent))


def _one(held: Held) -> dict[str, Any]:
    """What the run's page shows of one scope's book: its deadlines, the conditions
    holding, and each watched metric's window with the thresholds it is held to."""
    run = held.run
    metrics = []
    for metric, ring in sorted(run.rings.items()):
        values = ring.tail(DRAWN_VALUES)
        conditions = _conditions(run, metric)
        threshold = next((t for _, t in conditions if t is not None), None)
        metrics.append({"metric": metric, "size": ring.size, "count": ring.count,
                        "shown": len(values), "conditions": [text for text, _ in conditions],
                        "chart": charts.line(values, threshold, f"{metric}: the window's values"),
                        "window": " ".join(_number(v) for v in values)})
    return {"held": held, "running": run.state == RUNNING, "deadlines": deadlines(held),
            "holding": ", ".join(sorted(run.active)) if run.active else "",
            "metrics": metrics}
