"""Helpers for the training-integration tests: a real training script in a child
process, pointed at the test's daemon, and the daemon's history, polled with a deadline."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import sys
from typing import Any

from conftest import Daemon, eventually

SCOPE = "project:acme/vision"


def automations(*entries: tuple[str, str], timeout: str = "5m") -> str:
    """A daemon config with `kind = "none"` automations: (name, event table)."""
    # Scripts that need a short timeout heartbeat faster (runhook.init(heartbeat=0.2)).
    body = f'heartbeat_timeout = "{timeout}"\nclient_heartbeat = "100ms"\n'
    for name, event in entries:
        body += f"""
[[automations]]
name = "{name}"
scope = "{SCOPE}"
event = {event}
action = {{ kind = "none" }}
cooldown = "0"
"""
    return body


async def script(daemon: Daemon | str, code: str, *args: str,
                 env: dict[str, str] | None = None) -> asyncio.subprocess.Process:
    """Start `code` as a training process whose runhook.init finds the daemon from
    $RUNHOOK_URL, as a real job's would. Output is piped, to be read or awaited."""
    address = daemon if isinstance(daemon, str) else daemon.socket
    full = {**os.environ, "RUNHOOK_URL": f"unix://{address}", "RUNHOOK_ENTITY": "acme",
            "RUNHOOK_PROJECT": "vision", **(env or {})}
    return await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, *args, env=full, stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)


async def finished(process: asyncio.subprocess.Process, timeout: float = 120.0
                   ) -> tuple[int, str, str]:
    if process.stdin is not None:
        process.stdin.close()  # a script reading its input sees the end
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        process.kill()  # a hung script fails its test, saying what it printed
        out, err = await process.communicate()
        raise AssertionError(f"script still running after {timeout}s:\n{err.decode()}") \
            from None
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def history(daemon: Daemon, automation: str) -> list[dict[str, Any]]:
    """The automation's executions by event id (`run-N`, N as a number): one batch's
    executions share a commit time, so time alone does not order them."""
    async with daemon.client() as client:
        answer = await client.request({"type": "query.history", "automation": automation,
                                       "limit": 1000})
    assert answer["ok"], answer
    return sorted(answer["executions"], key=_by_event)


def _by_event(row: dict[str, Any]) -> tuple[str, int, float]:
    run, _, number = (row["event_id"] or "").rpartition("-")
    return run, int(number) if number.isdigit() else 0, row["created_at"]


async def settle(daemon: Daemon, automation: str, count: int,
                 timeout: float = 30.0) -> list[dict[str, Any]]:
    """The history once it holds `count` executions (never more: checked by callers
    after the process ended, when nothing more can come)."""
    return await eventually(lambda: history(daemon, automation),
                            lambda rows: len(rows) >= count, timeout)


def seq(event_id: str | None) -> int:
    """The number of a runhook.init event id (`run_id-process-n`)."""
    assert event_id is not None
    return int(event_id.rsplit("-", 1)[1])


def event_ids(daemon: Daemon, run_id: str) -> list[int]:
    """The numbers of the run's event ids that the daemon accepted (recorded with
    what they caused), read from its database: which events arrived, each once.
    All from one process: one id prefix."""
    with sqlite3.connect(f"file:{daemon.database}?mode=ro", uri=True) as db:
        ids = [row[0] for row in db.execute("SELECT id FROM event_ids WHERE id LIKE ?",
                                            (run_id + "-%",))]
    assert len({i.rsplit("-", 1)[0] for i in ids}) <= 1, ids
    return sorted(seq(i) for i in ids)
