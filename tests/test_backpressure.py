"""A full scope inbox stops ingress reading the connection that feeds it: the
client's sends stall, nothing is dropped, and once the scope catches up every
line is answered ok and committed.

In the real daemon a held writer never fills an inbox: the actor hands its
writes to a 16,384-write queue and goes on, and a connection stops first at its
16 unanswered chunks. So this runs the real pieces in-process (Store and its
writer, Scopes and their actor, Ingress on a real Unix socket) and makes the
chain whole: the writer's transaction is held (as test_failed_write holds it)
and its queue filled, so the actor waits to submit, its inbox (INBOX_SIZE
batches) fills from real connections, and the next chunk must wait for room."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
from test_socket import GOOD, RECORD, line

from runhook.config.model import decode
from runhook.config.settings import Settings, build
from runhook.core import constants
from runhook.core.metrics import Metrics
from runhook.evaluate.routing import Scopes
from runhook.ingest.ingress import Ingress
from runhook.ingest.protocol import Query
from runhook.store.database import Store, Write

SCOPE = "project:acme/vision"
STREAMED = 25_000  # ~3 MB of lines: far more than the socket and the reader buffer


class Runtime:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics = Metrics()


class NoDeliveries:
    def offer(self, job: Any) -> None:
        raise AssertionError("kind none delivers nothing")


async def no_queries(query: Query) -> bytes:
    raise AssertionError("no queries here")


async def until(condition: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    """Await a condition on the in-process daemon's state, bounded."""
    with anyio.move_on_after(timeout):
        while not condition():
            await asyncio.sleep(0.001)
        return
    raise AssertionError(f"not reached in {timeout}s: {what}")


def event(n: int) -> bytes:
    return line({**GOOD, "version": n, "id": f"e{n}"})


def received(ingress: Ingress) -> int:
    return sum(ingress.events_received.values())


async def test_a_full_inbox_stops_reading_the_connection_and_drops_nothing(short_dir: Path):
    store = Store(short_dir / "r.db")
    await store.open()
    apply = store._apply
    held, release = asyncio.Event(), asyncio.Event()

    async def held_apply(batch: list[Write]) -> str | None:
        if not held.is_set():
            held.set()
            await release.wait()
        return await apply(batch)

    store._apply = held_apply  # type: ignore[method-assign]
    path = str(short_dir / "ev.sock")
    clients: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    try:
        async with anyio.create_task_group() as root:
            await root.start(store.run)
            async with anyio.create_task_group() as scope_tg:
                scopes = Scopes(Runtime(build(decode(RECORD))), store,
                                NoDeliveries(), scope_tg)  # type: ignore[arg-type]
                ingress = Ingress(scopes, store, no_queries)
                async with anyio.create_task_group() as front:
                    await front.start(ingress.serve, path, 0o600)
                    try:
                        await scenario(store, scopes, ingress, path, clients, held, release)
                    finally:
                        release.set()  # never leave the writer held (its batch is shielded)
                        for _, writer in clients:
                            writer.close()
                        await ingress.drain(5)
                        front.cancel_scope.cancel()
                scopes.close()
            store.finish()
    finally:
        await store.close()


async def scenario(store: Store, scopes: Scopes, ingress: Ingress, path: str,
                   clients: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]],
                   held: asyncio.Event, release: asyncio.Event) -> None:
    # The writer takes a write and is held in its transaction; its queue is filled.
    await store.submit(Write([]))
    await asyncio.wait_for(held.wait(), 5)
    while store.queued < constants.WRITE_QUEUE_SIZE:
        await store.submit(Write([]))

    # One line per connection (one chunk, one batch each) until the actor, waiting
    # to hand the writer its first write, has a full inbox.
    sent = 0
    while True:
        assert sent <= 2 * constants.INBOX_SIZE + 2, "the scope inbox never filled"
        clients.append(await asyncio.open_unix_connection(path))
        clients[-1][1].write(event(sent))
        sent += 1
        await until(lambda n=sent: received(ingress) == n, f"line {sent} read")
        inbox = scopes.actors[SCOPE].inbox.statistics()
        if inbox.current_buffer_used == constants.INBOX_SIZE:
            break
    assert inbox.max_buffer_size == constants.INBOX_SIZE
    fillers = len(clients)

    # A client that streams without pause: its sends stall...
    reader, writer = await asyncio.open_unix_connection(path)
    clients.append((reader, writer))
    writer.write(b"".join(event(sent + n) for n in range(STREAMED)))
    draining = asyncio.ensure_future(writer.drain())
    done, _ = await asyncio.wait({draining}, timeout=1.0)  # awaited absence
    assert not done, "the client's sends went through while the inbox was full"
    assert writer.transport.get_write_buffer_size() > 0
    # ...because its first chunk waits for room in the full inbox (not because 16
    # chunks wait for answers: this connection has one in hand), and meanwhile
    # the daemon reads nothing more from it.
    inbox = scopes.actors[SCOPE].inbox.statistics()
    assert (inbox.current_buffer_used, inbox.tasks_waiting_send) == (constants.INBOX_SIZE, 1)
    read_then = received(ingress)
    assert sent < read_then < sent + STREAMED
    done, _ = await asyncio.wait({draining}, timeout=0.5)
    assert not done and received(ingress) == read_then, "read on while the inbox was full"

    release.set()
    await asyncio.wait_for(draining, 10)  # reading resumed: the rest went through
    for filler_reader, _ in clients[:fillers]:
        assert await asyncio.wait_for(filler_reader.readline(), 10) == b'{"ok":true}\n'
    for _ in range(STREAMED):
        assert await asyncio.wait_for(reader.readline(), 10) == b'{"ok":true}\n'
    total = sent + STREAMED
    assert received(ingress) == total

    # Every line answered ok is committed: an execution and an id each.
    db = sqlite3.connect(store.path)
    try:
        assert db.execute("SELECT count(*) FROM executions").fetchone()[0] == total
        assert db.execute("SELECT count(DISTINCT id) FROM event_ids").fetchone()[0] == total
    finally:
        db.close()


async def test_a_stalled_writer_stalls_the_sending_client_and_loses_nothing(start_daemon):
    """The real daemon, its database locked by another connection for 1.5 s (under
    the writer's 5 s busy_timeout): nothing can commit, so nothing is answered, and
    a client streaming 10 MB while reading its answers stalls once 16 unanswered
    chunks are read (the inbox is not what stops it here: the actor's writes queue
    at the writer). After the lock goes, every line is answered ok and committed."""
    daemon = await start_daemon(RECORD)
    count = 80_000
    reader, writer = await asyncio.open_unix_connection(daemon.socket)
    answers = bytearray()

    async def read_answers() -> None:
        while chunk := await reader.read(1 << 20):
            answers.extend(chunk)

    reading = asyncio.ensure_future(read_answers())
    holder = sqlite3.connect(daemon.database, isolation_level=None, timeout=5)
    try:
        holder.execute("BEGIN IMMEDIATE")
        writer.write(b"".join(event(n) for n in range(count)))
        draining = asyncio.ensure_future(writer.drain())
        await asyncio.wait({draining, reading}, timeout=1.5)  # awaited absence
        assert not answers, f"answered before anything could commit: {bytes(answers[:80])!r}"
        assert not draining.done(), "the daemon read every line while nothing could commit"
        assert writer.transport.get_write_buffer_size() > 0
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    try:
        # Bounds against a hang, not a pace: 80,000 lines take a loaded 2-core machine
        # (the suite's workers beside it) more than 10 s.
        await asyncio.wait_for(draining, 60)  # reading resumed as answers went out
        writer.write_eof()
        await asyncio.wait_for(reading, 60)
    finally:
        reading.cancel()
        writer.close()
    assert bytes(answers).splitlines() == [b'{"ok":true}'] * count
    db = sqlite3.connect(daemon.database)
    try:
        assert db.execute("SELECT count(*) FROM executions").fetchone()[0] == count
    finally:
        db.close()
