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


async def failing_once_actor(tmp_path: Any, monkeypatch: Any) -> tuple[Store, Any]:
    """An open store and a real actor of project:acme/vision whose first firing's
    evaluation raises (injected into the context), and which delivers nothing."""
    # record.py builds a firing's context (the Evaluator's Recorder half).
    from runhook.evaluate import record as evaluator_module
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

    return store, ScopeActor("project:acme/vision", settings.by_scope["project:acme/vision"],
                             store, NoDeliveries())


@pytest.mark.parametrize("hand_over", ["inbox", "take"])
async def test_an_evaluation_that_raises_changes_no_run_state(tmp_path, monkeypatch, hand_over):
    """A crossing whose evaluation raised half-way is not remembered: the retry of the
    same value fires. Real actor and store; the failure is injected into the context.
    Batches reach the actor through its inbox, or are evaluated by `take` in the
    sender's turn while the actor is idle (what ingest does)."""
    store, actor = await failing_once_actor(tmp_path, monkeypatch)
    event = RunMetrics(entity="acme", project="vision", run_id="r1", run_name="prod-1",
                       user="ana", values={"loss": 10.0}, id="m-1")

    async def send(line_no: int) -> Ticket:
        ticket = Ticket(asyncio.get_running_loop().create_future(), 1)
        await anyio.wait_all_tasks_blocked()  # the actor waits on its empty inbox
        # As admission hands over: `take` unless the actor must first reload its book
        # (after the failure), then the inbox.
        if hand_over != "take" or not actor.take([(event, 1.0, line_no)], ticket):
            assert hand_over == "inbox" or line_no > 1
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


async def test_take_splits_a_batch_at_a_failed_event_and_reloads_before_the_rest(
        tmp_path, monkeypatch):
    """One batch taken in the sender's turn: 1.0, then 10.0 whose evaluation raises,
    then 10.0 again. Line 2 is refused and leaves nothing; line 3 is evaluated after
    the book is reloaded from what committed (line 1), so it is a crossing and fires
    once, with the values of line 3 alone (window 1)."""
    store, actor = await failing_once_actor(tmp_path, monkeypatch)

    def loss(value: float, event_id: str) -> RunMetrics:
        return RunMetrics(entity="acme", project="vision", run_id="r1", run_name="prod-1",
                          user="ana", values={"loss": value}, id=event_id)

    async with anyio.create_task_group() as tg:
        tg.start_soon(store.run)
        async with anyio.create_task_group() as actors:
            actors.start_soon(actor.run)
            await anyio.wait_all_tasks_blocked()
            ticket = Ticket(asyncio.get_running_loop().create_future(), 1)
            batch = [(loss(1.0, "a"), 1.0, 1), (loss(10.0, "b"), 1.0, 2),
                     (loss(10.0, "c"), 1.0, 3)]
            assert actor.take(batch, ticket)
            await ticket.future
            assert [ticket.line_error(n) for n in (1, 3)] == [None, None]
            assert "injected" in (ticket.line_error(2) or "")
            actor.inbox.close()
        fired = await store.history()
        assert [(e.automation, e.context["metric_values"]) for e in fired] == [
            ("loss-high", [10.0])]
        assert await store.seen_event_ids(["a", "b", "c"], 0) == {
            ("a", "project:acme/vision"), ("c", "project:acme/vision")}
        store.finish()
    await store.close()


async def test_an_id_is_one_event_per_place_not_everywhere(start_daemon):
    """Ids are the client's, per place: the same id sent in another project is another
    event. Before, an id that reached no scope was recorded for every scope ('*'),
    and one taken by `entity:acme` for every project of acme, so whoever could write
    one project could make another project's real event a duplicate."""
    daemon = await start_daemon(CONFIG)

    def artifact(project: str) -> bytes:
        return artifact_line("job-42").replace(b'"project": "vision"',
                                               f'"project": "{project}"'.encode())

    # acme/sandbox: only the entity automation; other/x: no automation at all.
    first = await exchange(daemon.socket, [artifact("sandbox"),
                                           artifact_line("job-42").replace(b'"acme"', b'"other"')])
    assert first == [{"ok": True}, {"ok": True}]
    # The same id in acme/vision is a new event for both of vision's automations
    # (the entity one included), then a duplicate there, and only there.
    assert await exchange(daemon.socket, [artifact("vision")]) == [{"ok": True}]
    assert await exchange(daemon.socket, [artifact("vision"), artifact("sandbox")]) == [
        {"ok": True, "duplicate": True}] * 2
    assert sorted((e["automation"], e["scope"]) for e in await history(daemon)) == [
        ("created", "project:acme/vision"),
        ("created-anywhere", "entity:acme"), ("created-anywhere", "entity:acme")]
