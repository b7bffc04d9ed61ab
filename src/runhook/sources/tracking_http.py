"""Many small GETs to one server, pipelined over a few HTTP/1.1 keep-alive connections:
a look asks for thousands of metric histories, and a general client's cost per request
(aiohttp's is a few hundred µs) would be most of the follower's CPU. The destinations'
SSRF rule holds: every address a name resolves to is checked before connecting."""

from __future__ import annotations

import asyncio
import socket
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

import anyio

from runhook.config.destinations import ALLOW_PRIVATE, refused_address

# Requests written at once on one connection before its answers are read.
BATCH = 64
CONNECTIONS = 4


class HttpError(Exception):
    """The server could not be reached or spoke no HTTP; never names a credential."""


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: bytes


class Pipelined:
    def __init__(self, base_url: str, authorization: str | None, allow_private: bool,
                 timeout: float, max_body: int) -> None:
        parts = urlsplit(base_url)
        self._host = parts.hostname or ""
        self._tls = parts.scheme == "https"
        self._port = parts.port or (443 if self._tls else 80)
        self._prefix = parts.path.rstrip("/")
        host_header = parts.netloc.rpartition("@")[2]
        auth = f"Authorization: {authorization}\r\n" if authorization else ""
        self._headers = (f"Host: {host_header}\r\nAccept: application/json\r\n{auth}"
                         "\r\n").encode()
        self._allow_private = allow_private
        self._timeout = timeout
        self._max_body = max_body
        # asyncio's streams: readuntil/readexactly parse the pipelined answers.
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def close(self) -> None:
        for _, writer in self._idle:
            writer.close()
        self._idle.clear()

    async def get_many(self, targets: list[str]) -> list[Answer]:
        """GET each target (a path with its query), answers in order."""
        answers: list[Answer | None] = [None] * len(targets)
        share = -(-len(targets) // CONNECTIONS) if targets else 0
        lanes = [list(range(i, min(i + share, len(targets))))
                 for i in range(0, len(targets), max(share, 1))]
        try:
            async with anyio.create_task_group() as tg:
                for lane in lanes:
                    tg.start_soon(self._lane, lane, targets, answers)
        except ExceptionGroup as group:  # a lane failed, the others were cancelled: its error
            raise group.exceptions[0] from None
        return [a for a in answers if a is not None]

    async def _lane(self, lane: list[int], targets: list[str],
                    answers: list[Answer | None]) -> None:
        left = list(lane)
        reconnects = 0
        while left:
            reader, writer = await self._connection()
            batch = left[:BATCH]
            try:
                writer.write(b"".join(b"GET " + (self._prefix + targets[i]).encode()
                                      + b" HTTP/1.1\r\n" + self._headers for i in batch))
                with anyio.fail_after(self._timeout):
                    for i in batch:
                        answer, keep = await self._read(reader)
                        answers[i] = answer
                        left.remove(i)
                        if not keep:
                            break  # the server closes after this answer; the rest anew
                    else:
                        self._idle.append((reader, writer))
                        continue
            except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                reconnects += 1
                writer.close()
                # A kept-alive connection the server had closed: once more, anew.
                if reconnects > 2:
                    raise HttpError(f"connection failed: {type(exc).__name__}") from None
                continue
            except TimeoutError:
                writer.close()
                raise HttpError(f"no answer in {self._timeout:g}s") from None
            writer.close()

    async def _connection(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._idle:
            return self._idle.pop()
        loop = asyncio.get_running_loop()
        try:
            with anyio.fail_after(self._timeout):
                infos = await loop.getaddrinfo(self._host, self._port, type=socket.SOCK_STREAM)
                address = str(infos[0][4][0])
                for info in infos:
                    problem = refused_address(str(info[4][0]))
                    if problem and not self._allow_private:
                        raise HttpError(f"{self._host} resolves to {problem} ({ALLOW_PRIVATE})")
                context = ssl.create_default_context() if self._tls else None
                return await asyncio.open_connection(
                    address, self._port, ssl=context,
                    server_hostname=self._host if self._tls else None, limit=1 << 20)
        except TimeoutError:
            raise HttpError(f"no connection in {self._timeout:g}s") from None
        except OSError as exc:
            raise HttpError(f"cannot connect: {exc.strerror or type(exc).__name__}") from None

    async def _read(self, reader: asyncio.StreamReader) -> tuple[Answer, bool]:
        """One answer, and whether the connection stays open after it."""
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        # Only three headers matter; found in the lowered head rather than parsed into
        # a dict (that was most of the cost of an answer).
        lowered = head.lower()
        keep = head.startswith(b"HTTP/1.1") and _header(lowered, b"connection") != b"close"
        length = _header(lowered, b"content-length")
        if _header(lowered, b"transfer-encoding") == b"chunked":
            body = bytearray()
            while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
                if len(body) + size > self._max_body:
                    raise ValueError("answer too large")
                body += await reader.readexactly(size + 2)
                del body[-2:]
            await reader.readuntil(b"\r\n")
            return Answer(status, bytes(body)), keep
        if length is None:  # the body runs to the connection's end
            rest = await reader.read(self._max_body + 1)
            if len(rest) > self._max_body:
                raise ValueError("answer too large")
            return Answer(status, rest), False
        size = int(length)
        if size > self._max_body:
            raise ValueError("answer too large")
        return Answer(status, await reader.readexactly(size)), keep


def _header(lowered_head: bytes, name: bytes) -> bytes | None:
    """A header's value (stripped, lowercase) in a lowered response head, or None."""
    at = lowered_head.find(b"\r\n" + name + b":")
    if at < 0:
        return None
    start = at + len(name) + 3
    return lowered_head[start:lowered_head.index(b"\r\n", start)].strip()
