"""The follower's pipelined GETs against a real loopback server speaking the three
ways an HTTP/1.1 answer ends: Content-Length, chunked, and closing the connection."""

from __future__ import annotations

import asyncio

from runhook.sources.tracking_http import Pipelined

ANSWERS = {
    b"/length": b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                b"CONTENT-LENGTH:  7 \r\n\r\n{\"a\":1}",
    b"/chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\n\r\n"
                 b"3;x=y\r\n{\"b\r\n4\r\n\":2}\r\n0\r\n\r\n",
    b"/missing": b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\n{}",
    b"/close": b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
}


async def test_pipelined_answers_of_each_framing_come_back_in_order():
    connections = 0

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        try:
            while True:
                request = await reader.readuntil(b"\r\n\r\n")
                path = request.split(b" ")[1].split(b"?")[0]
                writer.write(ANSWERS[path])
                await writer.drain()
                if path == b"/close":
                    break
        except asyncio.IncompleteReadError:
            pass  # the client closed a kept-alive connection
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = Pipelined(f"http://127.0.0.1:{port}", None, True, 10.0, 1 << 20)
    try:
        # After the close, what that connection had left is asked again on another.
        targets = ["/length", "/chunked", "/close", "/missing", "/length?x=1"]
        answers = await client.get_many(targets)
    finally:
        await client.close()
        server.close()
        await server.wait_closed()
    assert [(a.status, a.body) for a in answers] == [
        (200, b'{"a":1}'), (200, b'{"b":2}'), (200, b"ok"), (404, b"{}"), (200, b'{"a":1}')]
    assert connections >= 2
