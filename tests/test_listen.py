"""The one serve function of the console and the remote listener: its hooks around the
bound socket, and a busy port refused naming the setting."""

from __future__ import annotations

import logging
import socket

import aiohttp
import anyio
import pytest
from aiohttp import web
from conftest import free_port

from runhook.core.schema import StartupError
from runhook.web.limits import Gate
from runhook.web.listen import serve_app

log = logging.getLogger("test")


def app() -> web.Application:
    made = web.Application()

    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="hi\n")

    made.router.add_get("/", hello)
    return made


async def test_bound_runs_before_ready_and_unbound_after_the_stop() -> None:
    port = free_port()
    said: list[str] = []
    async with anyio.create_task_group() as tg:
        await tg.start(lambda task_status: serve_app(
            app(), f"127.0.0.1:{port}", "127.0.0.1", port, lambda s: Gate(s, 4), header_s=5,
            setting="test.listen", refusal="listen on", url="up", logger=log,
            bound=lambda: said.append("bound"), unbound=lambda: said.append("unbound"),
            task_status=task_status))
        assert said == ["bound"]
        async with aiohttp.ClientSession() as client, \
                client.get(f"http://127.0.0.1:{port}/") as response:
            assert await response.text() == "hi\n"
        tg.cancel_scope.cancel()
    assert said == ["bound", "unbound"]


async def test_a_busy_port_is_refused_naming_the_setting() -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    said: list[str] = []
    try:
        with pytest.raises(StartupError, match=rf"cannot serve HTTP on 127.0.0.1:{port}: "
                                               r".* \(server.http\)$"):
            await serve_app(app(), f"127.0.0.1:{port}", "127.0.0.1", port,
                            lambda s: Gate(s, 4), header_s=5, setting="server.http",
                            refusal="serve HTTP on", url="up", logger=log,
                            bound=lambda: said.append("bound"),
                            unbound=lambda: said.append("unbound"))
    finally:
        taken.close()
    assert said == []  # never bound: the login file is neither written nor removed
