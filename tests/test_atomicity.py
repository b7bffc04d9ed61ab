"""Idempotency and atomicity: an event's id commits with everything it caused, or not
at all; a refused line records nothing, so its corrected retry with the same id is
evaluated."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import anyio
import pytest

from runhook.config.model import decode
from runhook.config.settings import build
from runhook.core.acks import Ticket
from runhook.core.events import RunMetrics
from runhook.store.database import Store

CONFIG = """
[[automations]]
name = "loss-high"
scope = "project:acme/vision"
event = { kind = "RUN_METRIC_THRESHOLD", metric = "loss", cmp = ">", threshold = 5.0 }
action = { kind = "none" }
cooldown = "0s"

[[automations]]
name = "created"
scope = "project:acme/vision"
event = { kind = "CREATE_ARTIFACT" }
action = { kind = "none" }

[[automations]]
name = "created-anywhere"
scope = "entity:acme"
event = { kind = "CREATE_ARTIFACT" }
action = { kind = "none" }
"""


async def exchange(socket_path: str, lines: list[bytes]) -> list[dict[str, Any]]:
    """Pipeline raw lines on one connection; one parsed answer per line."""
    reader, writer = await asyncio.open_unix_connection(socket_path)
    writer.write(b"".join(line + b"\n" for line in lines))
    await writer.drain()
    answers = [json.loads(await reader.readline()) for _ in lines]
    writer.close()
    return answers


def metric_line(value: float, event_id: str, time: str = "") -> bytes:
    extra = f', "time": {time}' if time else ""
    return (f'{{"type": "run.metrics", "entity": "acme", "project": "vision", "run_id": "r1", '
            f'"run_name": "prod-1", "user": "ana", "values": {{"loss": {value}}}, '
            f'"id": "{event_id}"{extra}}}').encode()


def artifact_line(event_id: str, time: str = "") -> bytes:
    extra = f', "time": {time}' if time else ""
    return (f'{{"type": "artifact.created", "entity": "acme", "project": "vision", '
            f'"collection": "c", "version": 1, "author": "ana", "id": "{event_id}"{extra}}}'
            ).encode()


async def history(daemon: Any) -> list[dict[str, Any]]:
    async with daemon.client() as client:
        return (await client.request({"type": "query.history", "limit": 1000}))["executions"]


@pytest.mark.parametrize("bad_time", ['"9999-12-31T23:59:59-23:59"', "NaN", "1e300"])
async def test_a_line_refused_for_its_time_leaves_its_id_and_the_crossing_free(
        start_daemon, bad_time):
    daemon = await start_daemon(CONFIG)
    refused = await exchange(daemon.socket, [artifact_line("art-1", bad_time),
                                             metric_line(10, "m-1", bad_time)])
    for answer in refused:
        assert answer["ok"] is False and "`time`" in answer["error"], answer
    assert await history(daemon) == []
    # The corrected retries carry the same ids and are evaluated: 2 scopes take the
    # artifact, and the metric crosses 5 (nothing in memory remembered the refused one).
    retried = await exchange(daemon.socket, [artifact_line("art-1"), metric_line(10, "m-1")])
    assert retried == [{"ok": True}, {"ok": True}]
    assert sorted(e["automation"] for e in await history(daemon)) == [
        "created", "created-anywhere", "loss-high"]
    again = await exchange(daemon.socket, [artifact_line("art-1"), metric_line(10, "m-1")])
    assert again == [{"ok": True, "duplicate": True}] * 2
    assert len(await history(daemon)) == 3


async def test_copies_of_one_event_in_one_chunk_are_evaluated_once(start_daemon):
    daemon = await start_daemon(CONFIG)
    answers = await exchange(daemon.socket, [artifact_line("same")] * 3)
    assert answers == [{"ok": True}] + [{"ok": True, "duplicate": True}] * 2
    assert len(await history(daemon)) == 2  # one per scope, once


async def test_an_evaluation_that_raises_changes_no_run_state(tmp_path, monkeypatch):
    """A crossing whose evaluation raised half-way is not remembered: the retry of the
    same value fires. Real actor and store; the failure is injected into the context."""
    from runhook.evaluate import evaluator as evaluator_module
    from runhook.evaluate.scope import ScopeActor

    settings = build(decode(CONFIG))
    store = Store(tmp_path / "a.db")
    await store.open()
    real = evaluator_module.run_context
    calls = []

    def failing_once(*args: Any, **kwargs: Any) -> dict[str, Any]:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("injected")
        return real(*args, **kwargs)

    monkeypatch.setattr(evaluator_module, "run_context", failing_once)

    class NoDeliveries:
        def offer(self, job: Any) -> None:
            raise AssertionError("kind none delivers nothing")

    actor = ScopeActor("project:acme/vision", settings.by_scope["project:acme/vision"], store,
                       NoDeliveries())
    event = RunMetrics(entity="acme", project="vision", run_id="r1", run_name="prod-1",
                       user="ana", values={"loss": 10.0}, id="m-1")

    async def send(line_no: int) -> Ticket:
        ticket = Ticket(asyncio.get_running_loop().create_future(), 1)
        await actor.inbox.send(([(event, 1.0, line_no)], ticket))
        await ticket.future
        return ticket

    async with anyio.create_task_group() as tg:
        tg.start_soon(store.run)
        async with anyio.create_task_group() as actors:
            actors.start_soon(actor.run)
            first = await send(1)
            assert "injected" in first.errors[1]
            second = await send(2)
            assert second.errors == {} and second.future.result() is None
            actor.inbox.close()
        assert [e.automation for e in await store.history()] == ["loss-high"]
        assert await store.seen_event_ids(["m-1"], 0) == {("m-1", "project:acme/vision")}
        store.finish()
    await store.close()
