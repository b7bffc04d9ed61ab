"""The loopback HTTP server under abuse: a capped, streamed executions API; header and
send timeouts; a connection cap, so a flood of half-sent requests cannot take the file
descriptors the events socket needs."""

from __future__ import annotations

import asyncio
import json
import os
import resource
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import anyio
import msgspec
import pytest
from aiohttp import web
from conftest import eventually, free_port
from test_socket import GOOD, RECORD

from runhook.core import constants
from runhook.core.metrics import Metrics
from runhook.ingest.commands import Overview
from runhook.store.database import Store, Write
from runhook.store.rows import Execution
from runhook.store.statements import INSERT_EXECUTION
from runhook.web import server
from runhook.web.limits import Limits
from runhook.web.session import Login


class CountingStore(Store):
    """The real store, counting the history rows the server has read."""

    rows_read = 0

    async def history(self, *args: Any, **kwargs: Any) -> list[Execution]:
        rows = await super().history(*args, **kwargs)
        self.rows_read += len(rows)
        return rows


class Idle:
    """What the HTTP app needs of a daemon, for a server of its own in the test."""

    metrics = Metrics()

    async def readiness(self) -> dict[str, bool]:
        return {"database": True}

    async def overview(self) -> Overview:
        raise AssertionError("not used")


@asynccontextmanager
async def running(store: Store) -> AsyncIterator[Store]:
    await store.open()
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(store.run)
            yield store
            store.finish()
    finally:
        await store.close()


@pytest.fixture
def store(tmp_path):
    return CountingStore(tmp_path / "r.db")


async def add_executions(store: Store, count: int, blob: int = 0, same_time: bool = False) -> None:
    committed = anyio.Event()
    rows = [(f"ex_{i:05d}", "record", "project:acme/vision", "CREATE_ARTIFACT",
             "artifact.created", None, "none", None, "FINISHED", None,
             msgspec.json.encode({"n": i, "blob": "x" * blob}).decode(), None,
             1000.0 if same_time else 1000.0 + i, 1000.0 + i, None) for i in range(count)]
    await store.submit(Write([(INSERT_EXECUTION, rows)],
                             lambda error: committed.set() if error is None else None))
    await committed.wait()


def app_of(store: Store, limits: Limits) -> web.Application:
    """The console's app for a server of the test's own; its login file by the database."""
    return server.make_app(Idle(), store, Login(f"{store.path}.sock", 0o600, "127.0.0.1:0"),
                           limits)


def bearer(app: web.Application) -> dict[str, str]:
    """The header that lets a script in: the login token (written once serving)."""
    return {"Authorization": f"Bearer {app[server.LOGIN].token}"}


async def serve(tg, store: Store, limits: Limits, app: web.Application | None = None) -> str:
    address = f"127.0.0.1:{free_port()}"
    await tg.start(server.serve, app or app_of(store, limits), address, limits)
    return address


async def closed_by_server(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sent before it closed the connection."""
    data = b""
    try:
        while chunk := await reader.read(65536):
            data += chunk
    except ConnectionResetError:
        pass
    return data


async def test_executions_are_capped_and_paged_in_order(store):
    async with running(store):
        await _capped_and_paged(store)


async def _capped_and_paged(store):
    await add_executions(store, 60, same_time=True)  # ties on created_at: id decides
    await add_executions(store, 0)
    async with anyio.create_task_group() as tg:
        app = app_of(store, Limits())
        address = await serve(tg, store, Limits(), app)
        async with aiohttp.ClientSession(headers=bearer(app)) as client:
            url = f"http://{address}/api/executions"
            async with client.get(url, params={"limit": "1001"}) as r:
                assert r.status == 400
                assert (await r.json())["error"] == \
                    "limit must be a whole number from 1 to 1000"
            async with client.get(url, params={"limit": "1000"}) as r:
                assert r.status == 200 and r.content_type == "application/json"
                rows = (await r.json())["executions"]
            assert [row["id"] for row in rows] == [f"ex_{i:05d}" for i in range(59, -1, -1)]
            async with client.get(url, params={"limit": "55"}) as r:  # more than one page
                assert [row["id"] for row in (await r.json())["executions"]] == \
                    [f"ex_{i:05d}" for i in range(59, 4, -1)]
            async with client.get(url, params={"automation": "other"}) as r:
                assert await r.json() == {"executions": []}
        tg.cancel_scope.cancel()


async def test_a_client_that_does_not_read_costs_a_page_not_the_answer(store):
    """150 executions of 200 KB: 30 MB of answer. A client that reads nothing gets
    what the sockets' buffers hold (a few MB); the server reads one page of rows
    from the database, and drops the connection at the send deadline."""
    async with running(store):
        received = await _not_reading(store)
    assert store.rows_read <= constants.HTTP_PAGE_ROWS
    assert b"200 OK" in received.split(b"\r\n", 1)[0]
    assert len(received) < 150 * 200_000 // 2  # the answer was cut, not buffered


async def _not_reading(store) -> bytes:
    await add_executions(store, 150, blob=200_000)
    finished = anyio.Event()

    @web.middleware
    async def watch(request: web.Request, handler: Any) -> web.StreamResponse:
        try:
            return await handler(request)
        finally:
            finished.set()

    limits = Limits(send_s=1.0)
    app = app_of(store, limits)
    app.middlewares.insert(0, watch)
    async with anyio.create_task_group() as tg:
        host, _, port = (await serve(tg, store, limits, app)).partition(":")
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect
        sock.connect((host, int(port)))
        sock.setblocking(False)
        reader, writer = await asyncio.open_connection(sock=sock)
        authorization = bearer(app)["Authorization"].encode()
        writer.write(b"GET /api/executions?limit=1000 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"Authorization: " + authorization + b"\r\n\r\n")
        with anyio.fail_after(10):
            await finished.wait()  # the send deadline ended the answer
            received = await closed_by_server(reader)
        writer.close()
        tg.cancel_scope.cancel()
    return received


async def test_half_sent_requests_time_out_and_connections_are_capped(store):
    async with running(store):
        await _capped(store)


async def _capped(store):
    limits = Limits(connections=4, header_s=0.3)
    async with anyio.create_task_group() as tg:
        host, _, port = (await serve(tg, store, limits)).partition(":")
        held = []
        for _ in range(4):
            reader, writer = await asyncio.open_connection(host, int(port))
            writer.write(b"GET /healthz HTTP/1.1\r\nHo")
            held.append((reader, writer))
        with anyio.fail_after(5):
            # The fifth is over the cap: told so and closed at once.
            reader, writer = await asyncio.open_connection(host, int(port))
            assert (await closed_by_server(reader)).startswith(b"HTTP/1.1 503 ")
            writer.close()
            # The four never finish their headers: closed at the header timeout.
            for reader, writer in held:
                assert await closed_by_server(reader) == b""
                writer.close()
        # Their places are free again.
        async with aiohttp.ClientSession() as client, \
                client.get(f"http://{host}:{port}/healthz") as r:
            assert r.status == 200
        tg.cancel_scope.cancel()


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


async def test_a_flood_of_half_sent_requests_leaves_the_events_socket_working(start_daemon):
    daemon = await start_daemon(RECORD)
    pid = daemon.process.pid
    cap, flood = constants.HTTP_CONNECTIONS, constants.HTTP_CONNECTIONS + 100
    # The unit's LimitNOFILE= scaled down: room for the capped HTTP connections, a
    # few event clients, and not for the whole flood.
    limit = open_fds(pid) + cap + 32
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (limit, limit))
    host, port = daemon.http.removeprefix("http://").split(":")
    connections = []
    try:
        for _ in range(flood):
            reader, writer = await asyncio.open_connection(host, int(port))
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Half: ")
            connections.append((reader, writer))
        with anyio.fail_after(8):
            # Accepted in order: the connections past the cap are closed at once...
            for reader, _ in connections[cap:]:
                await closed_by_server(reader)
            # ...so the daemon holds no more descriptors than the cap allows, and
            # the events socket still accepts and answers.
            assert open_fds(pid) <= limit
            async with daemon.client() as client:
                assert await client.request(GOOD) == {"ok": True}
    finally:
        for _, writer in connections:
            writer.close()

    async def healthz() -> int:
        # The daemon frees a capped slot when it sees the close, a moment after ours.
        try:
            async with aiohttp.ClientSession() as client, \
                    client.get(daemon.http + "/healthz") as r:
                return r.status
        except aiohttp.ClientError:
            return 0
    await eventually(healthz, lambda status: status == 200)
    async with daemon.console() as client, \
            client.get(daemon.http + "/api/executions") as r:
        assert [row["automation"] for row in json.loads(await r.read())["executions"]] \
            == ["record"]
