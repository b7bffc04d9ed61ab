"""Heartbeat timeouts against the intervals runs are heard at (docs/run-health.md): one late beat
must never have a live run declared crashed."""

from __future__ import annotations

from runhook.core.durations import describe


def timeout_problems(timeouts: list[tuple[str, float | None]],
                     beats: list[tuple[str, float]]) -> list[str]:
    """`timeouts`: (where, heartbeat timeout) pairs; `beats`: (where, interval) of every
    way runs are heard: the clients' heartbeat (`server.client_heartbeat`) and each MLflow
    tracking source's look (its runs are heard no more often). A timeout under twice
    the slowest of them is refused, naming both."""
    beats = [(where, beat) for where, beat in beats if beat]
    if not beats:
        return []
    beat_where, beat = max(beats, key=lambda pair: pair[1])
    if beat_where == "server.client_heartbeat":
        remedy = ("or set client_heartbeat to the interval your clients use "
                  "(runhook.init's heartbeat=, RUNHOOK_HEARTBEAT)")
    else:
        remedy = f"or have {beat_where.rsplit('.', 1)[0]} look more often"
    return [f"{where}: {describe(timeout)} is under twice {beat_where} ({describe(beat)}): "
            f"a live run whose heartbeat comes late once would be declared crashed; give at "
            f"least {describe(2 * beat)}, {remedy}"
            for where, timeout in timeouts if timeout is not None and timeout < 2 * beat]
