"""How the loopback HTTP server protects the daemon: a connection cap, a header timeout
and a deadline for sending each answer."""

from __future__ import annotations

# asyncio's Protocol layer: aiohttp's server speaks it, and the gate sits beneath it.
import asyncio
import asyncio.sslproto
import logging
import ssl
import weakref
from dataclasses import dataclass
from typing import Any, cast

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
    until the protocol is dropped unused (a finalizer: counting only connection_lost
    once let clients that failed their TLS handshake use up the cap for good). TLS,
    when on, is started here over the accepted TCP transport, so the gate holds the
    raw connection from the first byte: it can close one still in its handshake, and
    no TLS shutdown outlasts the handshake and header timeouts."""

    __slots__ = ("__weakref__", "_deadline", "_early", "_gate", "_held", "_inner", "_made",
                 "app", "raw")

    def __init__(self, inner: asyncio.Protocol, gate: Gate) -> None:
        self._inner = inner
        self._gate = gate
        self._held = [True]  # shared with the finalizer: released exactly once
        self._made = False  # the inner protocol has its transport
        self._early: list[bytes] = []  # TLS data that came before it did
        self.raw: asyncio.Transport | None = None  # the accepted TCP connection
        self.app: asyncio.BaseTransport | None = None  # what aiohttp speaks over
        self._deadline: asyncio.TimerHandle | None = None
        weakref.finalize(self, _release, gate, self._held)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self.raw is not None:  # the TLS transport, once the handshake is done
            self._connected(transport)
            return
        self.raw = raw = cast(asyncio.Transport, transport)
        loop = asyncio.get_running_loop()
        if self._gate.first_request_s is not None:
            # Handshake and headers of the first request within this, all told: the
            # connection is aborted, no TLS shutdown to wait for (a client trickling
            # header bytes held its slot 43 s with a 10 s header timeout).
            self._deadline = loop.call_later(self._gate.first_request_s, raw.abort)
        if self._gate.tls is None:
            self._connected(raw)
            return
        # What loop.start_tls does, but now, before a byte is read: started from a
        # task, the ClientHello could arrive first and be lost to the handshake.
        waiter = loop.create_future()
        waiter.add_done_callback(self._handshaken)
        timeout = self._gate.tls_timeout
        protocol = _ssl_protocol(loop)(loop, self, self._gate.tls, waiter, server_side=True,
                                       ssl_handshake_timeout=timeout,
                                       ssl_shutdown_timeout=timeout)
        raw.set_protocol(protocol)
        protocol.connection_made(raw)

    def _handshaken(self, waiter: asyncio.Future[None]) -> None:
        if waiter.cancelled() or waiter.exception() is not None:  # retrieved: no warning
            if self.raw is not None:
                self.raw.abort()
            _release(self._gate, self._held)
            self._gate.forget(self)

    def _connected(self, transport: asyncio.BaseTransport) -> None:
        self._made = True
        self.app = transport
        self._gate.transports[transport] = self
        self._inner.connection_made(transport)
        for data in self._early:
            self._inner.data_received(data)
        self._early.clear()

    def data_received(self, data: bytes) -> None:
        if self._made:
            self._inner.data_received(data)
        else:
            self._early.append(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._made else None

    def pause_writing(self) -> None:
        if self._made:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._made:
            self._inner.resume_writing()

    def started(self) -> None:
        """A request's headers arrived: from now on aiohttp's timeouts apply."""
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def connection_lost(self, exc: Exception | None) -> None:
        self.started()
        _release(self._gate, self._held)
        self._gate.forget(self)
        if self._made:
            self._made = False
            self._inner.connection_lost(exc)


def _ssl_protocol(loop: asyncio.AbstractEventLoop) -> Any:
    """The loop's own TLS protocol class: uvloop's for uvloop, asyncio's otherwise."""
    if type(loop).__module__.startswith("uvloop"):
        import uvloop.loop  # only when the daemon runs on uvloop

        return uvloop.loop.SSLProtocol  # type: ignore[attr-defined]
    return asyncio.sslproto.SSLProtocol


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
    holds even for a burst accepted in one go.

    With `evict`, a connection that has not authenticated never keeps out one that
    has: at the cap the oldest connection not yet `authenticated` is closed to make
    room (an idle flood then rotates among its own connections, while a client that
    sends its token at once gets through). `tls` is the listener's context, started
    per connection with `tls_timeout` for the handshake and for the shutdown."""

    def __init__(self, server: web.Server, limit: int, *, evict: bool = False,
                 tls: ssl.SSLContext | None = None, tls_timeout: float = 10.0,
                 first_request_s: float | None = None) -> None:
        self._server = server
        self._limit = limit
        self._evict = evict
        self.tls = tls
        self.tls_timeout = tls_timeout
        self.first_request_s = first_request_s
        self.open = 0
        self.refused = 0
        self.evicted = 0
        # Connections not yet authenticated, oldest first (in insertion order); weak,
        # so a protocol dropped unused is still finalized and gives its slot back.
        self._strangers: weakref.WeakKeyDictionary[_Counted, None] = \
            weakref.WeakKeyDictionary()
        self.transports: dict[asyncio.BaseTransport, _Counted] = {}

    def __call__(self) -> asyncio.Protocol:
        if self.open >= self._limit and not self._make_room():
            self.refused += 1
            if self.refused == 1 or self.refused % 1000 == 0:
                log.warning("HTTP: %d connections open, the most allowed; refused %d so far",
                            self.open, self.refused)
            return _Busy()
        self.open += 1
        counted = _Counted(self._server(), self)
        self._strangers[counted] = None
        return counted

    def _make_room(self) -> bool:
        """Close the oldest connection that has not authenticated; False if none can be."""
        if not self._evict:
            return False
        for victim in list(self._strangers):
            if victim.raw is None:
                continue  # accepted, not yet handed its transport: closed once it is
            del self._strangers[victim]
            victim.raw.abort()
            _release(self, victim._held)  # its slot is free now, not at connection_lost
            self.evicted += 1
            if self.evicted == 1 or self.evicted % 1000 == 0:
                log.warning("HTTP: %d connections open, the most allowed: closed the oldest "
                            "that had not authenticated (%d so far)", self.open + 1, self.evicted)
            return True
        return False

    def authenticated(self, transport: asyncio.BaseTransport | None) -> None:
        """The connection carried a valid token: never closed to make room."""
        counted = self.transports.get(transport) if transport is not None else None
        if counted is not None:
            counted.started()
            self._strangers.pop(counted, None)

    def started(self, transport: asyncio.BaseTransport | None) -> None:
        """A request's headers arrived on the connection."""
        counted = self.transports.get(transport) if transport is not None else None
        if counted is not None:
            counted.started()

    def forget(self, counted: _Counted) -> None:
        self._strangers.pop(counted, None)
        if counted.app is not None:
            self.transports.pop(counted.app, None)
