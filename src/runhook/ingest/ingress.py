"""The events socket: NDJSON in, exactly one answer line per request line, in order."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import TaskStatus

from runhook.core import constants
from runhook.core.schema import StartupError
from runhook.evaluate.scope import Scopes
from runhook.ingest import protocol
from runhook.ingest.admission import Admission, Answers, Copy, answer_copy
from runhook.ingest.idempotency import RecentIds
from runhook.ingest.protocol import Query
from runhook.store.database import Store

log = logging.getLogger("runhook.ingress")

QueryHandler = Callable[[Query], Awaitable[bytes]]
# Requests that only read: skipped once their client is gone (commands still run).
READ_ONLY = (protocol.History, protocol.ExecutionQuery, protocol.Status)


class Ingress:
    def __init__(self, scopes: Scopes, store: Store, queries: QueryHandler) -> None:
        self.admission = Admission(scopes, store)
        self._queries = queries
        self.connections = 0
        self._server: asyncio.AbstractServer | None = None
        self._open: dict[asyncio.StreamReader, asyncio.StreamWriter] = {}
        self._handlers: set[asyncio.Task[Any]] = set()
        self._draining = False
        self.listening = False

    @property
    def recent_ids(self) -> RecentIds:
        return self.admission.recent_ids

    @property
    def events_received(self) -> dict[str, int]:
        return self.admission.events_received

    @property
    def lines_rejected(self) -> int:
        return self.admission.lines_rejected

    async def serve(self, path: str, mode: int, *,
                    task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        try:
            _clear_stale_socket(Path(path))
            self._server = await asyncio.start_unix_server(self._connection, path)
            os.chmod(path, mode)
        except OSError as exc:
            raise StartupError(f"cannot listen on {path}: {exc.strerror or exc} "
                               "(server.socket)") from None
        self.listening = True
        log.info("listening on %s", path)
        task_status.started()
        try:
            await anyio.sleep_forever()
        finally:
            self.listening = False
            self._server.close()
            with contextlib.suppress(OSError):
                os.unlink(path)

    def stop_accepting(self) -> None:
        if self._server is not None:
            self._server.close()
        self.listening = False

    async def drain(self, timeout: float) -> None:
        """End every connection after the lines it already sent are answered; a
        line the client was still sending is dropped unanswered (it resends it)."""
        self._draining = True
        for reader, writer in self._open.items():
            _stop_reading(reader, writer)
        if self._handlers:
            await asyncio.wait(self._handlers, timeout=timeout)

    async def _connection(self, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._open[reader] = writer
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
        if self._draining:
            _stop_reading(reader, writer)
        # Bounded: when the client does not read its answers, we stop reading its lines.
        answers: asyncio.Queue[Answers | None] = asyncio.Queue(constants.PENDING_CHUNKS)
        writing = asyncio.create_task(self._write_answers(answers, writer))
        try:
            await self._read_lines(reader, answers)
        except (ConnectionError, OSError):
            pass
        finally:
            # Every line read gets its answer before the connection closes.
            await answers.put(None)
            with contextlib.suppress(Exception):
                await writing
            writer.close()
            self.connections -= 1
            self._open.pop(reader, None)
            if task is not None:
                self._handlers.discard(task)

    async def _read_lines(self, reader: asyncio.StreamReader,
                          answers: asyncio.Queue[Answers | None]) -> None:
        admission = self.admission
        line_no = 0
        # The start of a line still arriving. A bytearray, and only the new bytes
        # searched for a newline: a 1 MiB line in 64-byte writes costs linear time.
        pending = bytearray()
        discarding = False  # inside a line already over the limit: drop until its end
        while True:
            chunk = await reader.read(constants.READ_CHUNK)
            if not chunk:
                break
            if discarding:
                newline = chunk.find(b"\n")
                if newline < 0:
                    continue
                discarding = False
                line_no += 1
                refused = Answers()
                refused.results.append(admission.too_long(line_no))
                await answers.put(refused)
                chunk = chunk[newline + 1:]
            last = chunk.rfind(b"\n")
            if last < 0:
                pending += chunk
            else:
                lines = (bytes(pending) + chunk[:last] if pending else chunk[:last]).split(b"\n")
                pending = bytearray(chunk[last + 1:])
                await answers.put(await admission.chunk(line_no + 1, lines))
                line_no += len(lines)
            if len(pending) > constants.MAX_LINE_BYTES:
                pending = bytearray()
                discarding = True
        if discarding:
            last_line = Answers()  # over the limit and never ended: still answered
            last_line.results.append(admission.too_long(line_no + 1))
            await answers.put(last_line)
        elif pending.strip() and not self._draining:
            # A last line without its newline is still a request (unless we cut the
            # connection while the client was sending it).
            await answers.put(await admission.chunk(line_no + 1, [bytes(pending)]))

    async def _write_answers(self, answers: asyncio.Queue[Answers | None],
                             writer: asyncio.StreamWriter) -> None:
        """Answers each chunk as soon as its commit resolves, so a client that sends
        without pause still reads its answers as it goes."""
        broken = False
        while (item := await answers.get()) is not None:
            out = await self._resolve(item, broken)
            if out and not broken:
                try:
                    writer.write(b"".join(out))
                    await writer.drain()
                except (ConnectionError, OSError):
                    broken = True  # keep consuming so the reader is never blocked on us

    async def _resolve(self, answers: Answers, broken: bool) -> list[bytes]:
        ticket = answers.ticket
        error = await ticket.future if ticket is not None else None
        self.admission.settle(answers)
        out: list[bytes] = []
        for result in answers.results:
            if isinstance(result, bytes):
                out.append(result)
            elif isinstance(result, int):
                assert ticket is not None
                problem = error or ticket.errors.get(result)
                out.append(protocol.OK if problem is None
                           else protocol.error_line(result, problem))
            elif isinstance(result, Copy):
                out.append(await answer_copy(result, ticket))
            elif broken and isinstance(result, READ_ONLY):
                continue  # nobody reads it: a large history is not built for nothing
            else:
                # Queries run here, one at a time per connection, once the lines
                # before them are answered: a client that sends many and never reads
                # holds at most one answer in memory, not one per line.
                try:
                    out.append(await self._queries(result))
                except Exception as exc:
                    log.exception("request failed")
                    out.append(protocol.refusal(f"request failed: {exc}"))
        return out


def _stop_reading(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """No more bytes from this client: what is buffered is read, then EOF. The
    transport stops first, and the reader must not resume it (it would if its
    buffer had paused it: `_paused`), or a late packet hits a reader at EOF
    ("feed_data after feed_eof") and the committed lines go unanswered."""
    transport: Any = writer.transport  # uvloop's is no asyncio.ReadTransport, but reads
    if not transport.is_closing():
        transport.pause_reading()
    reader._paused = False  # type: ignore[attr-defined]  # see above
    reader.feed_eof()


def _clear_stale_socket(path: Path) -> None:
    """Remove a socket file left by a daemon that died; refuse to start if one is alive."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        return
    if not stat.S_ISSOCK(mode):
        raise StartupError(f"{path} exists and is not a socket (server.socket)")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except OSError:
        path.unlink()
        return
    finally:
        probe.close()
    raise StartupError(f"another daemon is listening on {path} (server.socket)")

