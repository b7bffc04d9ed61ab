"""One attempt against hostile loopback endpoints: errors and bodies never carry the URL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest
from conftest import free_port

from runhook.config.secrets import Redactor
from runhook.delivery import transport
from runhook.delivery.channels.webhook import Request

PATH = "/services/T0/B0/%7eSecretPathToken"
Answer = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@pytest.fixture
async def endpoint() -> AsyncIterator[Callable[[Answer], Awaitable[int]]]:
    """A raw TCP endpoint answering with the test's bytes; returns its port."""
    servers: list[asyncio.Server] = []

    async def start(answer: Answer) -> int:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            await answer(reader, writer)
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        servers.append(server)
        return int(server.sockets[0].getsockname()[1])

    yield start
    for server in servers:
        server.close()


async def attempt(port: int, secret: str = "") -> transport.Response:
    url = f"http://LOCALHOST:{port}{PATH}"
    async with aiohttp.ClientSession() as session:
        return await transport.post(session, Request(url, {}, b"{}"), 5.0,
                                    Redactor({"HOOK": url} if secret else {}))


def send(data: bytes) -> Answer:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(data)
        await writer.drain()
    return answer


@pytest.mark.parametrize("data, error", [
    (b"HTTP/1.1 2OO OK\r\n\r\n", "invalid HTTP response from the endpoint: Bad status line"),
    (b"", "the endpoint closed the connection without answering"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", "the endpoint sent a broken response"),
    ((b"HTTP/1.1 302 Found\r\nLocation: http://localhost/services/T0/B0/~SecretPathToken\r\n"
     b"Content-Length: 0\r\n\r\n"), "redirect not followed"),
])
async def test_errors_say_what_happened_not_where(endpoint, data, error):
    answer = await attempt(await endpoint(send(data)))
    assert answer.error is not None and answer.error.startswith(error), answer.error
    assert "SecretPathToken" not in answer.error and "localhost" not in answer.error.lower()


async def test_connection_refused_names_no_address():
    answer = await attempt(free_port())
    assert answer.error == "cannot connect to the endpoint: connection refused"


async def test_body_is_read_past_the_cut_and_redacted_before_it(endpoint):
    """A body arriving in pieces, the URL (a secret) quoted across the 1 KiB mark."""
    async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        quoted = f"http://localhost:{port}/services/T0/B0/~SecretPathToken".encode()
        body = b"x" * 1000 + quoted + b"y" * 500
        writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: %d\r\n\r\n" % len(body))
        for i in range(0, len(body), 100):
            writer.write(body[i:i + 100])
            await writer.drain()

    port = await endpoint(trickle)
    answer = await attempt(port, secret="yes")
    assert answer.body == "x" * 1000 + "[secret HOOK]"
