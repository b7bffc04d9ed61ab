"""Evaluation's seams: the id source and the clock an Evaluator or ScopeActor is given
name what it creates, and a batch read from a cluster partition carries its stream
position, which names its executions alike on any owner. Real actor, real store."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import Any

import anyio

from runhook.cluster.scopes import StreamIds
from runhook.config.model import decode
from runhook.config.settings import build
from runhook.core.acks import Ticket
from runhook.core.events import RunMetrics, RunState
from runhook.evaluate.evaluator import Evaluator
from runhook.evaluate.ids import IdSource
from runhook.evaluate.inbox import Batch, Streamed
from runhook.evaluate.scope import ScopeActor
from runhook.store.database import Store
from runhook.store.rows import Execution

SCOPE = "project:acme/vision"
CONFIG = f"""
[server]
heartbeat_timeout = "1s"
client_heartbeat = "100ms"
[[automations]]
name = "loss-high"
scope = "{SCOPE}"
event = {{ kind = "RUN_METRIC_THRESHOLD", metric = "loss", agg = "avg", window = 1, cmp = ">", threshold = 1.0 }}
action = {{ kind = "none" }}
[[automations]]
name = "crashed"
scope = "{SCOPE}"
event = {{ kind = "RUN_STATE", states = ["crashed"] }}
action = {{ kind = "none" }}
"""


class NamedIds:
    """An id source that names ids in order and remembers the causes it was told."""

    def __init__(self) -> None:
        self.causes: list[tuple[str, float | None]] = []
        self.made: list[float | None] = []

    def start(self, cause: str, at: float | None = None) -> None:
        self.causes.append((cause, at))

    def new_id(self, now: float | None = None) -> str:
        self.made.append(now)
        return f"ex_named_{len(self.made)}"


class FixedClock:
    """Reads what it is set to: wall 5000, monotonic 100 (a shift of 4900)."""

    def wall(self) -> float:
        return 5000.0

    def monotonic(self) -> float:
        return 100.0

    def read(self) -> tuple[float, float]:
        return 5000.0, 100.0


class NoDeliveries:
    def offer(self, job: Any) -> None:
        raise AssertionError("kind none delivers nothing")


def loss(value: float, run_id: str = "r1") -> RunMetrics:
    return RunMetrics(entity="acme", project="vision", run_id=run_id, values={"loss": value})


def test_the_evaluator_names_executions_by_the_id_source_it_is_given():
    """A crossing at wall 200 (monotonic 50), then the run's crash, noticed when its
    timers are due at wall 260 (monotonic 110: 60 s of silence, over 1 s). The two
    executions take the source's ids in order, made at their wall times; the timers
    name their causes: the time they were looked at, then the crash by the run's
    last-seen moved to wall time (50 + 150 = 200), which every owner agrees on."""
    settings = build(decode(CONFIG))
    ids = NamedIds()
    evaluator = Evaluator(SCOPE, settings.by_scope[SCOPE], settings=settings.scope(SCOPE),
                          ids=ids)
    running = RunState(entity="acme", project="vision", run_id="r1", state="running")
    assert evaluator.evaluate(running, 200.0, 200.0, 50.0).rows == []
    (row,) = evaluator.evaluate(loss(2.0), 200.0, 200.0, 50.0).rows
    assert row.id == "ex_named_1"
    (crash,) = evaluator.expire(260.0, 110.0).rows
    assert crash.id == "ex_named_2"
    assert ids.made == [200.0, 260.0]
    assert ids.causes == [(f"{SCOPE}|timer|260.0", None), (f"{SCOPE}|crashed r1 200.0", 200.0)]


async def test_a_streamed_batch_is_named_by_its_stream_position_not_the_clock(tmp_path: Path):
    """An actor given a fixed clock (wall 5000) and stream-derived ids takes two
    events read from a partition at stream sequences 41 and 42, received at
    1764300000.5 and 1764300001.25. The crossing (sequence 42) is recorded at its
    receipt time, not the clock's, and its id is the one any owner derives: the time
    in milliseconds, then blake2b of `scope|42|1` (the first id of that cause)."""
    digest = hashlib.blake2b(f"{SCOPE}|42|1".encode(), digest_size=7).hexdigest()
    batch = Streamed([(loss(0.5), 1764300000.0, 41), (loss(3.0), 1764300001.0, 42)],
                     [1764300000.5, 1764300001.25])
    (execution,) = await taken(tmp_path, StreamIds(), batch)
    assert (execution.id, execution.automation) == (f"ex_{1764300001250:012x}{digest}",
                                                    "loss-high")
    assert execution.created_at == 1764300001.25


async def test_one_machine_names_by_its_own_clock_when_given_one(tmp_path: Path):
    """The same crossing in a plain batch (line 7): recorded at the given clock's wall
    time (5000), with an id from the source the actor was given."""
    ids = NamedIds()
    (execution,) = await taken(tmp_path, ids, [(loss(3.0), 4999.0, 7)])
    assert (execution.id, execution.created_at) == ("ex_named_1", 5000.0)
    assert ids.causes == []  # a line of a chunk has no cause to name ids by


async def taken(tmp_path: Path, ids: IdSource, batch: Batch | Streamed) -> list[Execution]:
    """The history after an idle actor with FixedClock and `ids` took `batch`."""
    settings = build(decode(CONFIG))
    store = Store(tmp_path / "a.db")
    await store.open()
    actor = ScopeActor(SCOPE, settings.by_scope[SCOPE], store, NoDeliveries(),
                       settings=settings.scope(SCOPE), clock=FixedClock(), ids=ids)
    async with anyio.create_task_group() as tg:
        tg.start_soon(store.run)
        async with anyio.create_task_group() as actors:
            actors.start_soon(actor.run)
            await anyio.wait_all_tasks_blocked()
            ticket = Ticket(asyncio.get_running_loop().create_future(), 1)
            assert actor.take(batch, ticket)
            await ticket.future
            assert ticket.error is None and not ticket.errors
            actor.inbox.close()
        history = await store.history()
        store.finish()
    await store.close()
    return history
