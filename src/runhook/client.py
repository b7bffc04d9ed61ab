"""Talking to the daemon over its socket or HTTPS, for the CLI and for training scripts
(sync and async)."""

from __future__ import annotations

import asyncio
import http.client
import os
import socket
import ssl
from collections.abc import Iterable, Iterator
from typing import Any, Self
from urllib.parse import urlsplit

import aiohttp
import anyio
import msgspec
import tenacity

from runhook.core.constants import DEFAULT_SOCKET

# Lines written before reading their answers back: enough to keep the daemon
# busy, few enough that neither side's socket buffer fills while the other waits.
WINDOW = 512

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(dict[str, Any])


def _policy(wait: float) -> dict[str, Any]:
    """Connection retries: only while the socket is missing or refusing (the
    daemon is not up yet), backing off from 50 ms to 1 s, for `wait` seconds."""
    return {"stop": tenacity.stop_after_delay(wait),
            "wait": tenacity.wait_exponential(multiplier=0.05, max=1.0),
            "retry": tenacity.retry_if_exception_type((FileNotFoundError,
                                                       ConnectionRefusedError)),
            "reraise": True}


def _retrying(wait: float) -> tenacity.Retrying:
    return tenacity.Retrying(**_policy(wait))


class RunhookError(Exception):
    """The daemon refused a request; `answer` is its reply."""

    def __init__(self, answer: dict[str, Any]) -> None:
        super().__init__(answer.get("error", "request refused"))
        self.answer = answer


def _line(request: dict[str, Any] | bytes | str) -> bytes:
    if isinstance(request, bytes):
        return request.rstrip(b"\n") + b"\n"
    if isinstance(request, str):
        return request.rstrip("\n").encode() + b"\n"
    # msgspec writes NaN as null, which the daemon ignores, as it does NaN.
    return _encoder.encode(request) + b"\n"


def locate(address: str | None = None, token: str | None = None) -> tuple[str, str | None]:
    """Where the daemon is: `address` (a socket path, `unix:///path` or
    `https://host:port`), else $RUNHOOK_URL, else the default socket; and the
    token: `token`, else $RUNHOOK_TOKEN."""
    address = address or os.environ.get("RUNHOOK_URL") or DEFAULT_SOCKET
    address = address.removeprefix("unix://")
    if address.startswith("http://") and urlsplit(address).hostname not in LOOPBACK_HOSTS:
        # The bearer token would cross the network in clear text.
        raise ValueError(f"{address}: a token goes only over https:// (http:// is for "
                         "a listener on loopback)")
    return address, token if token is not None else os.environ.get("RUNHOOK_TOKEN")


LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def is_url(address: str) -> bool:
    return address.startswith(("https://", "http://"))


class Client:
    """A blocking client. `send` one event and get its answer once the daemon has
    committed what it caused; `send_many` pipelines. Over HTTPS each call is one
    streamed request on a kept-alive connection."""

    def __init__(self, path: str | None = None, timeout: float | None = 60.0,
                 wait: float = 0.0, token: str | None = None,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        """`wait`: seconds to keep trying to connect while the daemon is not up yet
        (restarting, or started alongside the training job). `path` may be a URL;
        `token` is its bearer token; `ssl_context` trusts a private CA."""
        self.path, token = locate(path, token)
        self._http: HttpLink | None = None
        if is_url(self.path):
            self._http = HttpLink(self.path, token, timeout, ssl_context)
            return
        self._sock = _retrying(wait)(self._connect, timeout)
        self._file = self._sock.makefile("rb")

    def _connect(self, timeout: float | None) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(self.path)
        except OSError as exc:
            sock.close()
            raise _naming(exc, self.path) from None
        return sock

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
            return
        self._file.close()
        self._sock.close()

    def _read(self) -> dict[str, Any]:
        line = self._file.readline()
        if not line:
            raise ConnectionError("the daemon closed the connection")
        return _decoder.decode(line)

    def request(self, request: dict[str, Any] | bytes | str) -> dict[str, Any]:
        if self._http is not None:
            # Consumed whole: the request ends, and its connection is reused.
            (answer,) = self._http.exchange([[_line(request)]])
            return answer
        self._sock.sendall(_line(request))
        return self._read()

    def send(self, event: dict[str, Any]) -> dict[str, Any]:
        """Send one event; raises RunhookError when the daemon refuses it."""
        answer = self.request(event)
        if not answer.get("ok"):
            raise RunhookError(answer)
        return answer

    def send_many(self, requests: Iterable[dict[str, Any] | bytes | str]
                  ) -> Iterator[dict[str, Any]]:
        """Pipeline requests; yields one answer per request, in order."""
        if self._http is not None:
            yield from self._http.exchange(_windows(requests))
            return
        batch: list[bytes] = []
        for request in requests:
            batch.append(_line(request))
            if len(batch) >= WINDOW:
                yield from self._exchange(batch)
                batch = []
        if batch:
            yield from self._exchange(batch)

    def _exchange(self, batch: list[bytes]) -> Iterator[dict[str, Any]]:
        self._sock.sendall(b"".join(batch))
        blank = sum(1 for line in batch if not line.strip())
        for _ in range(len(batch) - blank):
            yield self._read()

    def history(self, automation: str | None = None, state: str | None = None,
                limit: int = 50) -> list[dict[str, Any]]:
        request: dict[str, Any] = {"type": "query.history", "limit": limit}
        if automation:
            request["automation"] = automation
        if state:
            request["state"] = state
        answer = self.request(request)
        if not answer.get("ok"):
            raise RunhookError(answer)
        return list(answer["executions"])


def _windows(requests: Iterable[dict[str, Any] | bytes | str]) -> Iterator[list[bytes]]:
    batch: list[bytes] = []
    for request in requests:
        batch.append(_line(request))
        if len(batch) >= WINDOW:
            yield batch
            batch = []
    if batch:
        yield batch


def _refused(status: int, body: bytes) -> RunhookError:
    """A request the daemon's HTTP listener refused whole (401, 413, ...)."""
    try:
        answer = _decoder.decode(body)
    except msgspec.DecodeError:
        answer = {"ok": False, "error": body.decode("utf-8", "replace")[:200]}
    answer["error"] = f"HTTP {status}: {answer.get('error', '')}"
    return RunhookError(answer)


def _chunk(conn: http.client.HTTPConnection, lines: list[bytes]) -> None:
    data = b"".join(lines)
    if data:  # an empty chunk would end the body
        conn.send(b"%x\r\n%s\r\n" % (len(data), data))


class HttpLink:
    """`POST /v1/events` with a chunked body: a window of lines is sent, then its
    answers read, while the request is still open, so the daemon commits one window
    while the next is on its way (the socket's pipelining, over HTTPS)."""

    def __init__(self, url: str, token: str | None, timeout: float | None,
                 context: ssl.SSLContext | None) -> None:
        parts = urlsplit(url)
        if parts.hostname is None:
            raise ValueError(f"no host in {url!r}")
        self._path = parts.path.rstrip("/") + "/v1/events"
        self._token = token
        if parts.scheme == "https":
            self._conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                parts.hostname, parts.port or 443, timeout=timeout,
                context=context or ssl.create_default_context())
        else:
            self._conn = http.client.HTTPConnection(parts.hostname, parts.port or 80,
                                                    timeout=timeout)

    def close(self) -> None:
        self._conn.close()

    def _open(self, first: list[bytes]) -> http.client.HTTPResponse:
        """Start a request with its first window; its answer's head once it came."""
        conn = self._conn
        conn.putrequest("POST", self._path, skip_accept_encoding=True)
        if self._token:
            conn.putheader("Authorization", f"Bearer {self._token}")
        conn.putheader("Content-Type", "application/x-ndjson")
        conn.putheader("Transfer-Encoding", "chunked")
        conn.endheaders()
        _chunk(conn, first)
        return self._start(conn)

    def exchange(self, windows: Iterable[list[bytes]]) -> Iterator[dict[str, Any]]:
        conn = self._conn
        windows = iter(windows)
        first = next(windows, [])
        if not first:
            return  # nothing to send: no request at all
        reused = conn.sock is not None
        try:
            try:
                response = self._open(first)
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                if not reused:
                    raise
                # The daemon closed the idle kept-alive connection; it read nothing
                # of this request (the answer's head comes before any line is read).
                conn.close()
                response = self._open(first)
            window = first
            while True:
                for _ in range(sum(1 for line in window if line.strip())):
                    yield self._answer(response)
                window = next(windows, [])
                if not window:
                    break
                _chunk(conn, window)
            conn.send(b"0\r\n\r\n")
            response.read()  # the end of the answer: the connection is reusable
        except BaseException:
            conn.close()  # mid-request: the next call starts on a fresh connection
            raise

    @staticmethod
    def _start(conn: http.client.HTTPConnection) -> http.client.HTTPResponse:
        response = conn.getresponse()
        if response.status != 200:
            body = response.read(4096)
            conn.close()
            raise _refused(response.status, body)
        return response

    @staticmethod
    def _answer(response: http.client.HTTPResponse) -> dict[str, Any]:
        line = response.readline()
        if not line:
            raise ConnectionError("the daemon ended the answer early")
        return _decoder.decode(line)


class AsyncClient:
    """The same over asyncio, for async training loops and services."""

    def __init__(self, path: str | None = None, wait: float = 0.0, token: str | None = None,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self.path, self._token = locate(path, token)
        self.wait = wait
        self._ssl = ssl_context
        # asyncio's streams: a line answer is one readline over the Unix socket.
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._session: aiohttp.ClientSession | None = None
        self._lock = anyio.Lock()

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def connect(self) -> None:
        if is_url(self.path):
            headers = {"Authorization": f"Bearer {self._token}"} if self._token else {}
            self._session = aiohttp.ClientSession(
                headers=headers, connector=aiohttp.TCPConnector(ssl=self._ssl or True))
            return
        async for attempt in tenacity.AsyncRetrying(**_policy(self.wait)):
            with attempt:
                # History answers can be large; an event's answer is one short line.
                try:
                    self._reader, self._writer = await asyncio.open_unix_connection(
                        self.path, limit=1 << 28)
                except OSError as exc:
                    raise _naming(exc, self.path) from None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
        if self._writer is not None:
            self._writer.close()
            await self._writer.wait_closed()

    async def request(self, request: dict[str, Any] | bytes | str) -> dict[str, Any]:
        if self._session is not None:
            return await self._post(request)
        assert self._reader is not None and self._writer is not None, "call connect() first"
        async with self._lock:  # answers come in order: one request at a time per lock
            self._writer.write(_line(request))
            await self._writer.drain()
            line = await self._reader.readline()
        if not line:
            raise ConnectionError("the daemon closed the connection")
        return _decoder.decode(line)

    async def _post(self, request: dict[str, Any] | bytes | str) -> dict[str, Any]:
        assert self._session is not None
        async with self._session.post(self.path.rstrip("/") + "/v1/events", data=_line(request),
                                      headers={"Content-Type": "application/x-ndjson"}) as got:
            body = await got.read()
        if got.status != 200:
            raise _refused(got.status, body)
        return _decoder.decode(body.split(b"\n", 1)[0])

    async def send(self, event: dict[str, Any]) -> dict[str, Any]:
        answer = await self.request(event)
        if not answer.get("ok"):
            raise RunhookError(answer)
        return answer


def _naming(exc: OSError, path: str) -> OSError:
    """The same error, naming the socket: "No such file or directory: 'var/x.sock'"
    says which path was tried (a relative one is relative to the working directory)."""
    if exc.filename is not None or exc.errno is None:
        return exc
    return type(exc)(exc.errno, exc.strerror, path)
