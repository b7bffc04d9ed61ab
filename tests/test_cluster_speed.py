"""What a delivery costs on the wire in cluster mode (docs/cluster.md): attempt
records go to the history stream many to a message, and every mirror applies
them as it applied one each."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import anyio
import msgspec
import nats as nats_client
import pytest
from conftest import Receiver, eventually
from nats_cluster import NatsCluster
from test_cluster import history, start_node, stop_node
from test_cluster_truth import created_row, running
from test_publish import bus

from runhook.client import AsyncClient
from runhook.cluster.attempts import MOST, Recorder
from runhook.cluster.bus import HISTORY, Bus, partition_of
from runhook.cluster.leases import Tenure
from runhook.cluster.outbox import Outbox
from runhook.cluster.positions import Positions
from runhook.cluster.records import Foreign, statements
from runhook.config.cluster import ClusterSettings
from runhook.core.executions import ExecutionRow

__all__ = ["bus"]  # the fixture: a Bus on one real nats-server


def attempt(number: int) -> list[Any]:
    """The record of attempt `number` of its own execution ex_<number>, as
    deliver.py makes it."""
    execution_id = f"ex_{number}"
    return ["attempt", [execution_id, 1, 1.0 + number, 2.0, 200, None, None],
            ["FINISHED", None, 3.0 + number, None, 1, execution_id],
            created_row(execution_id, 1764300000.0 + number)]


def test_a_batch_of_attempts_is_applied_as_each_of_its_records_alone() -> None:
    records = [attempt(n) for n in range(20)]  # past 15: a msgpack array's long header
    alone = [s for r in records for s in statements(msgspec.msgpack.encode(r))]
    assert len(alone) == 60
    assert statements(msgspec.msgpack.encode(["attempts", records])) == alone
    bad = [*records[:3], ["attempt", ["ex_x", 0, 1.0, 2.0, 200, None, None],  # number 0
                          ["FINISHED", None, 1.0, None, 1, "ex_x"], records[0][3]]]
    with pytest.raises(Foreign) as refused:
        statements(msgspec.msgpack.encode(["attempts", bad]))
    assert refused.value.kind == "attempts"
    with pytest.raises(Foreign):  # a created record is no attempt
        statements(msgspec.msgpack.encode(["attempts", [["created", []]]]))


async def test_attempts_finished_together_go_out_in_one_message_each_told_it_landed(
        bus: Bus) -> None:
    """MOST + 44 attempts finish while no batch is being published: two messages
    (MOST records, then 44), each attempt told True, and the history stream holds
    every record in the order the attempts finished."""
    recorder = Recorder(bus, 30.0)
    count = MOST + 44
    told: dict[int, bool] = {}

    async def one(number: int) -> None:
        told[number] = await recorder.record(attempt(number))

    with anyio.fail_after(30):
        async with anyio.create_task_group() as outer:
            async with anyio.create_task_group() as tg:
                for number in range(count):
                    tg.start_soon(one, number)
                await anyio.wait_all_tasks_blocked()  # every record waiting for the recorder
                outer.start_soon(recorder.run)
            outer.cancel_scope.cancel()
    assert told == dict.fromkeys(range(count), True)
    assert recorder.batches == 2
    info = await bus.js.stream_info(HISTORY)
    assert info.state.messages == 2
    first = await bus.js.get_msg(HISTORY, info.state.first_seq)
    second = await bus.js.get_msg(HISTORY, info.state.first_seq + 1)
    applied = [*statements(first.data or b""), *statements(second.data or b"")]
    assert applied == [s for n in range(count)
                       for s in statements(msgspec.msgpack.encode(attempt(n)))]
    assert len(statements(first.data or b"")) == 3 * MOST


async def test_a_partitions_commits_published_at_once_are_each_taken_the_first_time(
        short_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Twenty commits of one partition published at once, on three NATS servers (R3):
    every fenced record is taken the first time. Sent together, JetStream refused
    all but one while the first was in process (10164, "wrong last sequence"), and
    each refused one waited a back-off before it was tried again."""
    nats = NatsCluster(short_dir / "nats", 3)
    await nats.start()
    connected = Bus(ClusterSettings(nats.urls, "a", 4, 3, 30.0, 10.0, 3600.0, 8))
    try:
        await connected.connect()
        partition = partition_of("project:acme/p0", 4)
        positions = Positions(connected, partition)
        await positions.claim()
        tenure = Tenure(30.0)
        tenure.renewed(time.monotonic())
        outbox = Outbox(connected)
        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                await tg.start(outbox.run)
                outbox.own(partition, positions.fence, tenure)
                for n in range(20):  # FINISHED: a history record each, nothing queued
                    outbox.publish([msgspec.convert(created_row(f"ex_{n}", 1764300000.0 + n),
                                                    ExecutionRow)])
                assert await outbox.flush(partition)
                tg.cancel_scope.cancel()
        assert "wrong last sequence" not in caplog.text
        info = await connected.js.stream_info(HISTORY, subjects_filter=">")
        assert (info.state.subjects or {})["runhook.hist"] == 20  # each once
    finally:
        await connected.close()
        await nats.stop()


async def test_a_copy_sent_again_after_its_attempt_was_recorded_is_not_sent_twice(
        short_dir: Path, receiver: Receiver) -> None:
    """An execution delivered and recorded (FINISHED) whose acknowledgement JetStream
    did not keep: its copy comes back (delivered a second time) and is acknowledged
    unsent, while a copy of an execution never attempted is sent. Node a stops; the
    copies are put on the queue and taken once and put back by hand (as a node that
    died before acknowledging leaves them); a starts again and takes them."""
    async with running(short_dir, receiver, ("a",)) as (nats, nodes):
        (node,) = nodes
        async with AsyncClient(node.socket) as client:
            assert await client.request({"type": "artifact.created", "entity": "acme",
                                         "project": "p0", "collection": "m",
                                         "version": 1}) == {"ok": True}
        first = (await receiver.next(timeout=30)).headers["webhook-id"]
        await eventually(lambda: history(node.socket),
                         lambda rows: [(r["id"], r["state"]) for r in rows]
                         == [(first, "FINISHED")], timeout=30)
        assert await stop_node(node) == 0
        nc = await nats_client.connect(servers=nats.urls)
        try:
            js = nc.jetstream()
            last = await js.get_last_msg(HISTORY, "runhook.hist")  # its attempt's record
            kind, ((_, _, _, row),) = msgspec.msgpack.decode(last.data or b"")
            assert kind == "attempts" and row[0] == first
            never = [f"{first}-never", *row[1:8], "PENDING", *row[9:]]
            for copy in (row, never):
                await js.publish("runhook.ex", msgspec.msgpack.encode(copy),
                                 headers={"Nats-Msg-Id": f"copy-{copy[0]}"})
            taken = await js.pull_subscribe("runhook.ex", durable="deliver",
                                            stream="RUNHOOK_EXECUTIONS")
            for msg in await taken.fetch(2, timeout=10):
                await msg.nak()  # delivered once, and back: the next is a second
        finally:
            await nc.close()
        await start_node(node)
        assert (await receiver.next(timeout=30)).headers["webhook-id"] == f"{first}-never"
        await eventually(lambda: asyncio.to_thread(node.log.read_text),
                         lambda text: f"execution {first!r} came back after its attempt 1 "
                         "was recorded" in text, timeout=30)
        assert [r.headers["webhook-id"] for r in receiver.requests] == [first, f"{first}-never"]
