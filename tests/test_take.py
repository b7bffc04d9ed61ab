"""ScopeActor.take: a batch evaluated in the sender's turn while the actor is idle keeps
everything the inbox path keeps, timers included. Real actor, real store."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import anyio
from conftest import eventually

from runhook.config.model import decode
from runhook.config.settings import build
from runhook.core.acks import Ticket
from runhook.core.events import RunState
from runhook.evaluate.scope import ScopeActor
from runhook.store.database import Store

SCOPE = "project:acme/vision"
CONFIG = f"""
[server]
heartbeat_timeout = "1s"
client_heartbeat = "100ms"
[[automations]]
name = "crashed"
scope = "{SCOPE}"
event = {{ kind = "RUN_STATE", states = ["crashed"] }}
action = {{ kind = "none" }}
"""


class NoDeliveries:
    def offer(self, job: Any) -> None:
        raise AssertionError("kind none delivers nothing")


async def test_a_deadline_set_by_take_wakes_the_idle_actor(tmp_path: Path):
    """The actor waits on an empty inbox with no timer at all; `take` evaluates a run
    saying `running`, which sets the run's first heartbeat deadline. Nothing else
    will ever reach the actor, so only a wake-up from `take` lets it see the deadline:
    the run is declared crashed about a second later."""
    settings = build(decode(CONFIG))
    store = Store(tmp_path / "a.db")
    await store.open()
    actor = ScopeActor(SCOPE, settings.by_scope[SCOPE], store, NoDeliveries(),
                       settings=settings.scope(SCOPE))
    running = RunState(entity="acme", project="vision", run_id="r1", run_name="prod-1",
                       state="running")
    async with anyio.create_task_group() as tg:
        tg.start_soon(store.run)
        async with anyio.create_task_group() as actors:
            actors.start_soon(actor.run)
            await anyio.wait_all_tasks_blocked()
            assert actor.evaluator.next_deadline() is None  # waiting with no timer
            ticket = Ticket(asyncio.get_running_loop().create_future(), 1)
            said_at = time.time()
            assert actor.take([(running, said_at, 1)], ticket)
            await ticket.future
            # The deadline is 1 s away; without the wake-up it never comes.
            await eventually(store.history,
                             lambda rows: any(e.automation == "crashed" for e in rows), 10)
            actor.inbox.close()
        (crash,) = await store.history()
        assert crash.context["run_status"] == "crashed"
        assert crash.created_at - said_at >= 1.0  # not before its deadline
        store.finish()
    await store.close()
