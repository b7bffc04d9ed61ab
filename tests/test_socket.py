"""The events socket protocol against the real daemon: one answer per line, in order,
every error class named with its line, and the connection still usable after each."""

from __future__ import annotations

import asyncio
import json

import pytest

from runhook.ingest import protocol

RECORD = """
[[automations]]
name = "record"
scope = "project:acme/vision"
event = { kind = "CREATE_ARTIFACT" }
action = { kind = "none" }
"""

GOOD = {"type": "artifact.created", "entity": "acme", "project": "vision",
        "collection": "ds", "version": 1}


def line(obj: object) -> bytes:
    return json.dumps(obj).encode() + b"\n"


async def exchange(socket_path: str, data: bytes, answers: int) -> list[dict]:
    reader, writer = await asyncio.open_unix_connection(socket_path)
    writer.write(data)
    await writer.drain()
    out = [json.loads(await asyncio.wait_for(reader.readline(), 20)) for _ in range(answers)]
    writer.close()
    return out


@pytest.fixture
async def daemon(start_daemon):
    return await start_daemon(RECORD)


@pytest.mark.parametrize("bad, expected", [
    (b"{not json\n", "line 1: not valid JSON"),
    (line({"type": "artifact.exploded", "entity": "acme"}),
     "line 1: field `type`: unknown type 'artifact.exploded'"),
    (line({"entity": "acme"}), "line 1: missing required field `type`"),
    (line({k: v for k, v in GOOD.items() if k != "collection"}),
     "line 1: missing required field `collection`"),
    (line({**GOOD, "version": "3"}), "line 1: field `version`: expected `int`, got `str`"),
    (line({**GOOD, "version": -1}), "line 1: field `version`: expected `int` >= 0"),
    (line({**GOOD, "alises": ["x"]}), "line 1: unknown field `alises`"),
    (line({**GOOD, "registry": "model"}),
     "line 1: give exactly one of `project` and `registry`"),
    (line({**GOOD, "time": "yesterday"}), "line 1: field `time`:"),
    (line([1, 2]), "line 1: expected a JSON object"),
    (line({"type": "run.state", "entity": "acme", "registry": "r", "run_id": "1",
           "state": "failed"}), "line 1: run events belong to a `project`"),
    (line({"type": "run.metrics", "entity": "acme", "project": "p", "run_id": "1",
           "values": {"acc": 0.5, "loss": "high"}}),
     "line 1: field `values.loss`: expected `float | null`, got `str`"),
    (line({"type": "run.state", "entity": "acme", "project": "p", "run_id": "1",
           "state": "exploded"}), "line 1: field `state`: invalid value 'exploded'"),
])
async def test_bad_line_is_named_and_connection_goes_on(daemon, bad, expected):
    answers = await exchange(daemon.socket, bad + line(GOOD), 2)
    assert answers[0]["ok"] is False
    assert answers[0]["error"].startswith(expected), answers[0]["error"]
    assert answers[1] == {"ok": True}


async def test_line_over_one_mebibyte_is_refused_and_the_next_is_read(daemon):
    huge = line({**GOOD, "metadata": {"blob": "x" * (1 << 20)}})
    answers = await exchange(daemon.socket, line(GOOD) + huge + line(GOOD), 3)
    assert answers[0] == {"ok": True}
    assert answers[1]["ok"] is False
    assert answers[1]["error"].startswith("line 2: line is over 1048576 bytes")
    assert answers[2] == {"ok": True}


async def test_line_under_the_limit_spanning_many_reads_is_accepted(daemon):
    big = line({**GOOD, "metadata": {"blob": "y" * 900_000}})
    assert await exchange(daemon.socket, big, 1) == [{"ok": True}]


async def test_pipelined_lines_are_answered_in_order(daemon):
    lines = []
    expected = []
    for i in range(3000):
        if i % 7 == 3:
            lines.append(b'{"type": 5}\n')
            expected.append(f"line {i + 1}:")
        else:
            lines.append(line({**GOOD, "version": i}))
            expected.append(None)
    answers = await exchange(daemon.socket, b"".join(lines), len(lines))
    for answer, want in zip(answers, expected, strict=True):
        if want is None:
            assert answer == {"ok": True}
        else:
            assert answer["error"].startswith(want)
    async with daemon.client() as client:
        history = await client.request({"type": "query.history", "limit": 10000})
    assert len(history["executions"]) == sum(1 for e in expected if e is None)


async def test_last_line_without_newline_is_answered(daemon):
    reader, writer = await asyncio.open_unix_connection(daemon.socket)
    writer.write(json.dumps(GOOD).encode())
    writer.write_eof()
    assert json.loads(await asyncio.wait_for(reader.readline(), 20)) == {"ok": True}
    assert await reader.readline() == b""  # and then the daemon closes
    writer.close()


async def test_blank_lines_get_no_answer(daemon):
    answers = await exchange(daemon.socket, b"\n\r\n" + line(GOOD) + b"\n", 1)
    assert answers == [{"ok": True}]


async def test_idempotency_id_is_evaluated_once(daemon):
    event = {**GOOD, "id": "client-42"}
    answers = await exchange(daemon.socket, line(event) + line(event), 2)
    assert answers == [{"ok": True}, {"ok": True, "duplicate": True}]
    again = await exchange(daemon.socket, line(event), 1)  # another connection, same id
    assert again == [{"ok": True, "duplicate": True}]
    async with daemon.client() as client:
        history = await client.request({"type": "query.history"})
    assert len(history["executions"]) == 1
    assert history["executions"][0]["event_id"] == "client-42"


async def test_idempotency_survives_restart(start_daemon):
    first = await start_daemon(RECORD)
    event = {**GOOD, "id": "once"}
    assert await exchange(first.socket, line(event), 1) == [{"ok": True}]
    assert await first.stop() == 0
    second = await start_daemon(config=first.config)
    assert await exchange(second.socket, line(event), 1) == [{"ok": True, "duplicate": True}]


async def test_many_clients_at_once(daemon):
    clients, each = 25, 200

    async def one(c: int) -> list[dict]:
        data = b"".join(line({**GOOD, "collection": f"c{c}", "version": i}) for i in range(each))
        return await exchange(daemon.socket, data, each)

    results = await asyncio.gather(*(one(c) for c in range(clients)))
    assert all(a == {"ok": True} for answers in results for a in answers)
    async with daemon.client() as client:
        history = await client.request({"type": "query.history", "limit": 10000})
    per_collection: dict[str, set[int]] = {}
    for row in history["executions"]:
        per_collection.setdefault(row["context"]["artifact_collection_name"], set()).add(
            row["context"]["artifact_version_index"])
    assert per_collection == {f"c{c}": set(range(each)) for c in range(clients)}


async def test_client_that_reads_late_loses_nothing(daemon):
    """Write far more lines than the daemon buffers before reading any answer:
    the daemon stops reading (backpressure) instead of dropping, and every line is
    answered once the client reads."""
    count = 200_000  # 21 MB; the daemon holds a few MB of them (answers pending, buffers)
    fires = {i for i in range(count) if i % 100 == 99}  # the rest go to a project nobody watches
    other = {**GOOD, "project": "other"}
    data = b"".join(line({**(GOOD if i in fires else other), "version": i}) for i in range(count))
    reader, writer = await asyncio.open_unix_connection(daemon.socket)
    writer.write(data)
    writing = asyncio.create_task(writer.drain())
    # Wait until the daemon stops taking bytes (our buffer unchanged for half a second),
    # reading no answer meanwhile: it must stop with most of the data still unsent.
    # (Right after write() the buffer is never empty: the kernel takes a few hundred KB.)
    loop = asyncio.get_running_loop()
    deadline, last, still = loop.time() + 30, -1, 0
    while still < 10:
        assert loop.time() < deadline, "the daemon never stopped reading"
        await asyncio.sleep(0.05)
        size = writer.transport.get_write_buffer_size()
        still, last = (still + 1 if size == last else 0), size
    assert last > 0 and not writing.done(), "the daemon read everything nobody answered"
    answers = 0
    while answers < count:
        got = await asyncio.wait_for(reader.readline(), 30)
        assert got == b'{"ok":true}\n'
        answers += 1
    await writing
    writer.close()
    async with daemon.client() as client:
        history = await client.request({"type": "query.history", "limit": 10_000})
    assert {r["context"]["artifact_version_index"] for r in history["executions"]} == fires


async def test_socket_mode_is_owner_and_group(daemon):
    import os
    import stat
    assert stat.S_IMODE(os.stat(daemon.socket).st_mode) == 0o660


def test_every_query_and_command_is_known_as_one():
    """Ingress tells queries from events by class (QUERY_CLASSES): a query class
    missing there would be admitted as an event."""
    def subclasses(cls: type) -> set[type]:
        return {c for sub in cls.__subclasses__() for c in {sub} | subclasses(sub)}
    assert protocol.QUERY_CLASSES == subclasses(protocol.Query)
    assert len(protocol.QUERY_CLASSES) == len(protocol.QUERY_TYPES)
