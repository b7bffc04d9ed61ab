"""Talking to the daemon over its socket, for the CLI and for training scripts (sync and async)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterable, Iterator
from typing import Any, Self

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


class Client:
    """A blocking client. `send` one event and get its answer once the daemon has
    committed what it caused; `send_many` pipelines."""

    def __init__(self, path: str = DEFAULT_SOCKET, timeout: float | None = 60.0,
                 wait: float = 0.0) -> None:
        """`wait`: seconds to keep trying to connect while the daemon is not up yet
        (restarting, or started alongside the training job)."""
        self.path = path
        self._sock = _retrying(wait)(self._connect, timeout)
        self._file = self._sock.makefile("rb")

    def _connect(self, timeout: float | None) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(self.path)
        except OSError:
            sock.close()
            raise
        return sock

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._file.close()
        self._sock.close()

    def _read(self) -> dict[str, Any]:
        line = self._file.readline()
        if not line:
            raise ConnectionError("the daemon closed the connection")
        return _decoder.decode(line)

    def request(self, request: dict[str, Any] | bytes | str) -> dict[str, Any]:
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


class AsyncClient:
    """The same over asyncio, for async training loops and services."""

    def __init__(self, path: str = DEFAULT_SOCKET, wait: float = 0.0) -> None:
        self.path = path
        self.wait = wait
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._lock = asyncio.Lock()

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def connect(self) -> None:
        async for attempt in tenacity.AsyncRetrying(**_policy(self.wait)):
            with attempt:
                # History answers can be large; an event's answer is one short line.
                self._reader, self._writer = await asyncio.open_unix_connection(
                    self.path, limit=1 << 28)

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            await self._writer.wait_closed()

    async def request(self, request: dict[str, Any] | bytes | str) -> dict[str, Any]:
        assert self._reader is not None and self._writer is not None, "call connect() first"
        async with self._lock:  # answers come in order: one request at a time per lock
            self._writer.write(_line(request))
            await self._writer.drain()
            line = await self._reader.readline()
        if not line:
            raise ConnectionError("the daemon closed the connection")
        return _decoder.decode(line)

    async def send(self, event: dict[str, Any]) -> dict[str, Any]:
        answer = await self.request(event)
        if not answer.get("ok"):
            raise RunhookError(answer)
        return answer
