"""Feeding hand-written series through a RunBook (pure, no daemon)."""

from __future__ import annotations

from runhook.config.model import decode
from runhook.config.settings import build
from runhook.core.events import RunMetrics, RunState
from runhook.evaluate.runbook import RunBook


def book(event_table: str, cooldown: str = "0", extra: str = "") -> RunBook:
    settings = build(decode(f"""
[server]
client_heartbeat = "1s"
[[automations]]
name = "a"
scope = "project:acme/vision"
event = {event_table}
action = {{ kind = "none" }}
cooldown = "{cooldown}"
{extra}
"""))
    return RunBook(settings.automations)


def metrics(values: dict, run_id: str = "r1", name: str = "prod-1", user: str = "ana"):
    return RunMetrics(entity="acme", project="vision", run_id=run_id, run_name=name, user=user,
                      values=values)


def feed(b: RunBook, series: list, metric: str = "loss", times: list[float] | None = None,
         **run) -> tuple[list[int], list[int]]:
    """Indices of the values that fired and that were skipped by the cooldown."""
    fired, skipped = [], []
    for i, value in enumerate(series):
        now = times[i] if times else float(i)
        outcome = b.metrics(metrics({metric: value}, **run), now)
        for firing in outcome.firings:
            (fired if firing.action == "FIRE" else skipped).append(i)
    return fired, skipped


def state(b: RunBook, states: list[str], run_id: str = "r1", times: list[float] | None = None):
    fired, skipped = [], []
    for i, s in enumerate(states):
        event = RunState(entity="acme", project="vision", run_id=run_id, run_name="prod-1",
                         user="ana", state=s)
        for firing in b.state(event, times[i] if times else float(i)).firings:
            (fired if firing.action == "FIRE" else skipped).append(i)
    return fired, skipped
