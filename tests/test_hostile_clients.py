"""The socket against clients that close abruptly, never read, poison a batch or
pipeline commands among events: found by an attacker's pass over the ingest."""

from __future__ import annotations

import json
import signal
import socket
import sqlite3
from typing import Any

import anyio
from conftest import eventually
from test_atomicity import CONFIG, artifact_line, exchange, history
from test_streaming import rss_mb

from runhook.core.acks import Ticket
from runhook.store.database import STALE, Store, Write

# Ids starting with `fail` cannot be recorded: the write that carries one fails,
# as a full disk would fail it, while every other write commits.
POISON_IDS = ("CREATE TRIGGER poison BEFORE INSERT ON event_ids WHEN NEW.id LIKE 'fail%' "
              "BEGIN SELECT RAISE(ABORT, 'refused by the test'); END")


def sql(daemon: Any, statement: str) -> None:
    db = sqlite3.connect(daemon.database, timeout=10)
    db.execute(statement)
    db.commit()
    db.close()


def unscoped_line(event_id: str) -> bytes:
    """An event of a scope without automations: its id is recorded on its own."""
    return (f'{{"type": "artifact.tag_added", "entity": "nobody", "project": "vision", '
            f'"collection": "c", "version": 1, "tag": "t", "id": "{event_id}"}}').encode()


async def test_a_failed_id_is_free_again_before_its_client_reads_the_answer(start_daemon):
    """A's copy of `fail-1` failed to commit while A, not reading, had its answers
    held back behind earlier ones. The id is released when the commit fails, not
    when (if ever) A's answer is written: B's retry is evaluated at once."""
    daemon = await start_daemon(CONFIG)
    sql(daemon, POISON_IDS)
    a = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    a.connect(daemon.socket)
    a.sendall(b"x\n" * 10_000)  # 630 KB of error answers: more than the socket holds
    a.sendall(artifact_line("fail-1") + b"\n")
    async def log() -> str:
        return daemon.log_text()
    await eventually(log, lambda text: "refused by the test" in text)
    sql(daemon, "DROP TRIGGER poison")
    assert await exchange(daemon.socket, [artifact_line("fail-1")]) == [{"ok": True}]
    assert len(await history(daemon)) == 2
    a.close()


async def test_a_failed_part_marks_only_its_own_lines(start_daemon):
    """Line 1's id write fails; line 2 (no id, two scopes) committed: only line 1
    is an error, and line 2's executions are not doubled by a resend."""
    daemon = await start_daemon(CONFIG)
    sql(daemon, POISON_IDS)
    no_id = json.loads(artifact_line("x"))
    del no_id["id"]
    answers = await exchange(daemon.socket, [unscoped_line("fail-2"),
                                             json.dumps(no_id).encode()])
    assert answers[0]["ok"] is False and "refused by the test" in answers[0]["error"]
    assert answers[1] == {"ok": True}
    assert sorted(e["automation"] for e in await history(daemon)) == [
        "created", "created-anywhere"]


async def test_sigterm_ends_even_with_a_client_that_never_reads(start_daemon):
    daemon = await start_daemon(CONFIG)
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.connect(daemon.socket)
    client.setblocking(False)
    status = json.dumps({"type": "query.status"}).encode() + b"\n"
    sent = 0
    try:
        while sent < 50_000:  # until the daemon stops reading us
            client.send(status * 100)
            sent += 100
    except BlockingIOError:
        pass
    assert await daemon.stop(signal.SIGTERM) == 0  # within the fixture's 30 s bound
    client.close()


async def test_a_lone_surrogate_is_refused_at_decode_and_spoils_no_batch(start_daemon):
    daemon = await start_daemon(CONFIG)
    poison = (b'{"type": "run.metrics", "entity": "acme", "project": "vision", '
              b'"run_id": "r\\ud800", "run_name": "n", "user": "u", "values": {"loss": NaN}}')
    lines = [artifact_line(f"ok-{i}") for i in range(100)]
    answers = await exchange(daemon.socket, [*lines[:50], poison, *lines[50:]])
    assert answers[50] == {"ok": False, "error": "line 51: not valid UTF-8: a lone surrogate "
                                                 "escape"}
    assert answers[:50] + answers[51:] == [{"ok": True}] * 100


async def test_an_id_with_a_nul_is_not_cut_at_it(start_daemon):
    daemon = await start_daemon(CONFIG)
    answers = await exchange(daemon.socket, [artifact_line("job-8\\u0000x"),
                                             artifact_line("job-9")])
    assert answers == [{"ok": True}] * 2
    # A different event whose id is the part before the NUL is its own event.
    assert await exchange(daemon.socket, [artifact_line("job-8")]) == [{"ok": True}]
    assert len(await history(daemon)) == 6


async def test_a_reload_in_a_pipeline_applies_to_the_lines_after_it_only(start_daemon):
    daemon = await start_daemon(CONFIG)
    daemon.config.write_text(daemon.config.read_text().replace('scope = "entity:acme"',
                                                               'scope = "entity:other"'))
    answers = await exchange(daemon.socket, [artifact_line("before"),
                                             b'{"type": "command.reload"}',
                                             artifact_line("after")])
    assert answers[0] == answers[2] == {"ok": True} and answers[1]["ok"], answers
    fired = sorted((e["event_id"], e["automation"]) for e in await history(daemon))
    assert fired == [("after", "created"), ("before", "created"),
                     ("before", "created-anywhere")]


async def test_a_flood_of_tiny_bad_lines_unread_holds_bounded_memory(start_daemon):
    """Two-byte bad lines, never read: each costs a ~90-byte error answer. The
    daemon holds at most PENDING_CHUNKS runs of CHUNK_LINES answers, not 16 reads'
    worth (130,000 answers each)."""
    daemon = await start_daemon(CONFIG)
    baseline = rss_mb(daemon.process.pid)
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.connect(daemon.socket)
    client.settimeout(2.0)
    block = b"x\n" * 500_000
    try:
        for _ in range(40):  # 40 MB of lines at most; the daemon stops reading first
            client.sendall(block)
    except TimeoutError:
        pass  # the daemon stopped reading: backpressure
    async with daemon.client() as probe:  # it still answers others
        assert (await probe.request({"type": "query.status"}))["ok"]
    grown = rss_mb(daemon.process.pid) - baseline
    client.close()
    assert grown < 100, f"RSS grew {grown:.0f} MB for answers nobody reads"


async def test_one_write_sqlite_refuses_fails_alone(tmp_path):
    """A write SQLite cannot store fails by itself, not with the batch beside it."""
    store = Store(tmp_path / "a.db")
    await store.open()
    outcomes: dict[str, str | None] = {}
    done = anyio.Event()

    def record(name: str) -> Any:
        def told(error: str | None) -> None:
            outcomes[name] = error
            if len(outcomes) == 3:
                done.set()
        return told

    insert = "INSERT INTO event_ids (id, scope, received_at) VALUES (?, ?, ?)"
    async with anyio.create_task_group() as tg:
        await store.submit(Write([(insert, [("a", "s", 1.0)])], record("a")))
        await store.submit(Write([(insert, [("b\ud800", "s", 1.0)])], record("bad")))
        await store.submit(Write([(insert, [("c", "s", 1.0)])], record("c")))
        tg.start_soon(store.run)  # all three queued: one batch
        await done.wait()
        store.finish()
    assert outcomes["a"] is None and outcomes["c"] is None
    assert outcomes["bad"] is not None and "surrogates not allowed" in outcomes["bad"]
    assert await store.seen_event_ids(["a", "c"], 0) == {("a", "s"), ("c", "s")}
    await store.close()
    assert STALE and Ticket  # the names this room exports for the actors
