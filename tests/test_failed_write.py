"""Atomicity (an event's id commits with everything it caused, or nothing does) after
a failed write: what a refused event did to a scope's memory must not reach the
database through a later write. Found while writing test_soak.py; both failed before
writes computed from a diverged book were dropped as stale.

A real ScopeActor and Store; the writer's transaction is held, then failed, as a
full disk or a lock held past busy_timeout would fail it, so the order of events
is exact instead of timed."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio

from runhook.config.model import decode
from runhook.config.settings import build
from runhook.core.acks import Ticket
from runhook.core.events import RunMetrics
from runhook.evaluate.scope import Checkpoint, ScopeActor
from runhook.store.database import Store, Write

SCOPE = "project:acme/vision"
CONFIG = """
[[automations]]
name = "avg3"
scope = "project:acme/vision"
event = { kind = "RUN_METRIC_THRESHOLD", metric = "loss", agg = "avg", window = 3, cmp = ">", threshold = 5.5 }
action = { kind = "none" }
cooldown = "0s"
"""
FULL = "database write failed: database or disk is full"


class NoDeliveries:
    def offer(self, job: Any) -> None:
        raise AssertionError("kind none delivers nothing")


class Harness:
    """Feeds one actor; `hold_next_write()` makes the writer's next transaction wait
    for `fail_held()` and then fail without writing anything."""

    def __init__(self, store: Store, actor: ScopeActor) -> None:
        self.store = store
        self.actor = actor
        self.submitted = 0
        self.changed = asyncio.Condition()
        self._hold = False
        self.held = asyncio.Event()
        self._release = asyncio.Event()
        apply, submit = store._apply, store.submit

        async def held_apply(batch: list[Write]) -> str | None:
            if not self._hold:
                return await apply(batch)
            self._hold = False
            self.held.set()
            await self._release.wait()
            return FULL

        async def counted_submit(write: Write) -> None:
            await submit(write)
            self.submitted += 1
            async with self.changed:
                self.changed.notify_all()

        store._apply = held_apply  # type: ignore[method-assign]
        store.submit = counted_submit  # type: ignore[method-assign]

    def hold_next_write(self) -> None:
        self._hold = True

    def fail_held(self) -> None:
        self._release.set()

    async def _handed_over(self, send: Callable[[], Awaitable[None]]) -> None:
        """Send an inbox item; return once the actor handed its write to the writer."""
        before = self.submitted
        await send()
        async with self.changed:
            await asyncio.wait_for(self.changed.wait_for(lambda: self.submitted > before), 5)

    async def metric(self, value: float, event_id: str, line_no: int) -> Ticket:
        event = RunMetrics(entity="acme", project="vision", run_id="r1", run_name="prod-1",
                           user="ana", values={"loss": value}, id=event_id)
        ticket = Ticket(asyncio.get_running_loop().create_future(), 1)
        await self._handed_over(lambda: self.actor.inbox.send(([(event, 1.0, line_no)], ticket)))
        return ticket

    async def accepted(self, value: float, event_id: str, line_no: int) -> None:
        ticket = await self.metric(value, event_id, line_no)
        assert await answer(ticket, line_no) is None

    async def checkpoint(self) -> None:
        await self._handed_over(lambda: self.actor.inbox.send((Checkpoint(), None)))


async def answer(ticket: Ticket, line_no: int) -> str | None:
    """What the client is answered for the line: None (ok), or why not."""
    await asyncio.wait_for(ticket.future, 5)
    return ticket.line_error(line_no)


async def firings(tmp_path: Path, script: Callable[[Harness], Awaitable[None]]
                  ) -> list[tuple[str | None, list[float]]]:
    """Run `script` against a real actor and store; the committed firings after it."""
    settings = build(decode(CONFIG))
    store = Store(tmp_path / "a.db")
    await store.open()
    actor = ScopeActor(SCOPE, settings.by_scope[SCOPE], store, NoDeliveries())
    harness = Harness(store, actor)
    async with anyio.create_task_group() as tg:
        tg.start_soon(store.run)
        async with anyio.create_task_group() as actors:
            actors.start_soon(actor.run)
            await script(harness)
            actor.inbox.close()
        rows = [(e.event_id, e.context["metric_values"]) for e in await store.history()]
        store.finish()
    await store.close()
    return rows


async def test_a_value_refused_by_a_failed_write_is_in_no_later_window(tmp_path):
    """0, 0 committed; A = 9 is evaluated and its write fails; B = 9 was evaluated
    while that write was being tried. Whatever B's answer, no committed window may
    hold A's 9: today B commits a firing on [0, 9 (A), 9 (B)] and is answered ok
    while A is answered with the error."""
    answers = {}

    async def script(h: Harness) -> None:
        await h.accepted(0.0, "m0", 1)
        await h.accepted(0.0, "m1", 2)
        h.hold_next_write()
        a = await h.metric(9.0, "A", 3)
        await h.held.wait()
        b = await h.metric(9.0, "B", 4)
        h.fail_held()
        answers["A"], answers["B"] = await answer(a, 3), await answer(b, 4)
    rows = await firings(tmp_path, script)
    assert answers["A"] == FULL
    # Committed: 0, 0 and perhaps B's 9: avg <= 3, nothing can have fired.
    assert rows == [], f"B answered {answers['B']!r}; committed firings {rows}"


async def test_a_checkpoint_does_not_commit_a_refused_value(tmp_path):
    """0, 0 committed; A = 9 refused by a failed write, a checkpoint taken while
    that write was being tried; the client resends A, then D = 9. The series is
    0, 0, 9, 9: one crossing, at D, on [0, 9, 9]. Today the checkpoint commits
    [0, 0, 9 (refused A)], the resent A makes it [0, 9, 9 (A twice)] and fires."""

    async def script(h: Harness) -> None:
        await h.accepted(0.0, "m0", 1)
        await h.accepted(0.0, "m1", 2)
        h.hold_next_write()
        a = await h.metric(9.0, "A", 3)
        await h.held.wait()
        await h.checkpoint()
        h.fail_held()
        assert await answer(a, 3) == FULL
        await h.accepted(9.0, "A", 5)  # the client's retry, same id
        await h.accepted(9.0, "D", 6)
    assert await firings(tmp_path, script) == [("D", [0.0, 9.0, 9.0])]
