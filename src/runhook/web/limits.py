"""How the loopback HTTP server protects the daemon: a connection cap, a header timeout
and a deadline for sending each answer."""

from __future__ import annotations

import asyncio
import logging
import weakref
from dataclasses import dataclass

import anyio
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from runhook.core import constants

log = logging.getLogger("runhook.http")

BUSY = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
        b"Content-Length: 21\r\nRetry-After: 1\r\nConnection: close\r\n\r\n"
        b"too many connections\n")


@dataclass(frozen=True, slots=True)
class Limits:
    connections: int = constants.HTTP_CONNECTIONS
    header_s: float = constants.HTTP_HEADER_TIMEOUT_S
    send_s: float = constants.HTTP_SEND_TIMEOUT_S


DEFAULT_LIMITS = Limits()


def deadline(limits: Limits) -> Middleware:
    """A middleware: each answer, from the handler's start to its last byte, gets
    `send_s`; then the connection is dropped. Without it a client that asks and
    never reads would hold its connection, and what was written for it, forever."""

    @web.middleware
    async def send_in_time(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            with anyio.move_on_after(limits.send_s):
                response = await handler(request)
                # Sent here, under the deadline, rather than by aiohttp after we return.
                await response.prepare(request)
                await response.write_eof()
                return response
        except ConnectionError:
            pass  # the client left mid-answer: nothing to report
        else:
            log.info("HTTP %s %s: not taken within %gs, connection dropped",
                     request.method, request.path, limits.send_s)
            if request.transport is not None:
                request.transport.abort()
        # aiohttp's attempt to send this meets the closed connection and stops there.
        return web.Response(status=503)

    return send_in_time


class _Counted(asyncio.Protocol):
    """aiohttp's handler of one connection, counted until the connection is lost, or
    until the protocol is dropped unused: under TLS a failed or timed-out handshake
    never calls connection_made nor connection_lost (asyncio and uvloop alike), and
    counting only connection_lost let a client without TLS use up the cap for good."""

    __slots__ = ("__weakref__", "_gate", "_held", "_inner")

    def __init__(self, inner: asyncio.Protocol, gate: Gate) -> None:
        self._inner = inner
        self._gate = gate
        self._held = [True]  # shared with the finalizer: released exactly once
        weakref.finalize(self, _release, gate, self._held)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        _release(self._gate, self._held)
        self._inner.connection_lost(exc)


def _release(gate: Gate, held: list[bool]) -> None:
    if held[0]:
        held[0] = False
        gate.open -= 1


class _Busy(asyncio.Protocol):
    """A connection past the cap: answered 503 and closed, so it holds no descriptor."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.WriteTransport subclasses: an assert
        # here failed (and logged a traceback) for every refused connection.
        write = getattr(transport, "write", None)
        if write is not None:
            write(BUSY)
        transport.close()


class Gate:
    """The protocol factory for the listening socket: aiohttp's handlers while fewer
    than `limit` connections are open, a 503 past that. Counted from the factory
    call (asyncio may create many protocols before any connection_made), so the cap
    holds even for a burst accepted in one go."""

    def __init__(self, server: web.Server, limit: int) -> None:
        self._server = server
        self._limit = limit
        self.open = 0
        self.refused = 0

    def __call__(self) -> asyncio.Protocol:
        if self.open >= self._limit:
            self.refused += 1
            if self.refused == 1 or self.refused % 1000 == 0:
                log.warning("HTTP: %d connections open, the most allowed; refused %d so far",
                            self.open, self.refused)
            return _Busy()
        self.open += 1
        return _Counted(self._server(), self)
