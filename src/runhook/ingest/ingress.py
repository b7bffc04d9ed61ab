"""The events socket: NDJSON in, exactly one answer line per request line, in order."""

from __future__ import annotations

import logging
import socket
import stat
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import suppress
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import SocketStream, TaskStatus
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from runhook.core import constants
from runhook.core.schema import StartupError
from runhook.evaluate.routing import Router
from runhook.ingest import protocol
from runhook.ingest.admission import Admission, Answers, Copy, Request, answer_copy
from runhook.ingest.budget import Budget, Flow
from runhook.ingest.idempotency import RecentIds
from runhook.ingest.protocol import Query
from runhook.store.database import Store

log = logging.getLogger("runhook.ingress")

QueryHandler = Callable[[Query], Awaitable[bytes]]
# Requests that only read: skipped once their client is gone (commands still run).
READ_ONLY = (protocol.History, protocol.ExecutionQuery, protocol.Status)


class Turn:
    """A query or command in the pipeline. It runs when the lines before it are
    answered, and the lines after it are admitted only once it ran, so a reload or
    a history sits exactly where the client put it."""

    __slots__ = ("line_no", "ran", "request")

    def __init__(self, line_no: int, request: Query) -> None:
        self.line_no = line_no
        self.request = request
        self.ran = anyio.Event()


Item = Answers | Turn


class Sender:
    """A connection's answer queue, which hands each item the bytes it came from: the
    budget gets them back once the item's commit resolves."""

    __slots__ = ("flow", "stream")

    def __init__(self, stream: MemoryObjectSendStream[Item], flow: Flow) -> None:
        self.stream = stream
        self.flow = flow

    async def send(self, item: Item) -> None:
        self.flow.settle(item.ticket if isinstance(item, Answers) else None)
        await self.stream.send(item)


class Connection:
    """One client's reading state, as drain sees it, and its bytes in the budget."""

    __slots__ = ("flow", "receiving")

    def __init__(self, budget: Budget) -> None:
        self.receiving: anyio.CancelScope | None = None  # set while waiting for bytes
        self.flow = Flow(budget)


class Ingress:
    """Every connection is a task of one task group owned by `serve`; each runs
    its reader and its answer writer in a group of its own."""

    def __init__(self, scopes: Router[Any], store: Store, queries: QueryHandler,
                 budget: Budget | None = None) -> None:
        self.admission = Admission(scopes, store)
        # Shared with the HTTPS listener (web/remote.py): one budget for the daemon.
        self.budget = budget if budget is not None else Budget()
        self._queries = queries
        self.connections = 0
        self._open: set[Connection] = set()
        self._accepting: anyio.CancelScope | None = None
        self._draining = False
        self._idle = anyio.Event()  # set when draining and no connection is left
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
            listener = await anyio.create_unix_listener(path, mode=mode)
        except OSError as exc:
            raise StartupError(f"cannot listen on {path}: {exc.strerror or exc} "
                               "(server.socket)") from None
        self.listening = True
        log.info("listening on %s", path)
        try:
            async with anyio.create_task_group() as connections:
                with anyio.CancelScope() as self._accepting:
                    task_status.started()
                    async with listener:
                        while True:
                            stream = await listener.accept()
                            # Counted here, not in the task: drain waits for it too.
                            self.connections += 1
                            connections.start_soon(self._connection, stream)
                await anyio.sleep_forever()  # connections run on until drained
        finally:
            self.listening = False
            with suppress(OSError):
                Path(path).unlink()

    def stop_accepting(self) -> None:
        if self._accepting is not None:
            self._accepting.cancel()
        self.listening = False

    async def drain(self, timeout: float) -> None:
        """End every connection after the lines it already read are answered; a
        line the client was still sending is dropped unanswered (it resends it).
        Past `timeout` the caller cancels what is left."""
        self._draining = True
        for connection in self._open:
            if connection.receiving is not None:
                connection.receiving.cancel()
        if self.connections:
            with anyio.move_on_after(timeout):
                await self._idle.wait()

    async def _connection(self, stream: SocketStream) -> None:
        connection = Connection(self.budget)
        self._open.add(connection)
        try:
            if self.connections > constants.MAX_SOCKET_CONNECTIONS:
                with suppress(anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                    await stream.send(protocol.refusal(
                        f"too many connections ({constants.MAX_SOCKET_CONNECTIONS}); "
                        "try again later"))
                return
            # Bounded: when the client does not read its answers, we stop reading its lines.
            send, receive = anyio.create_memory_object_stream[Item](constants.PENDING_CHUNKS)
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._write_answers, receive, stream)
                async with send:  # closing it ends the writer once all is answered
                    await self._read_lines(stream, Sender(send, connection.flow), connection)
        finally:
            connection.flow.close()
            self._open.discard(connection)
            self.connections -= 1
            if self._draining and not self.connections:
                self._idle.set()
            with anyio.CancelScope(shield=True):
                await stream.aclose()

    async def _receive(self, stream: SocketStream, connection: Connection) -> bytes:
        """The next bytes, or b"" at the end: the client's, or ours when draining.
        Only this wait is ever cancelled by drain, so no line already read (and
        perhaps already committed) loses its answer."""
        with anyio.CancelScope() as scope:
            connection.receiving = scope
            if self._draining:
                scope.cancel()
            try:
                chunk = await stream.receive(constants.READ_CHUNK)
                # Over the budget: this read waits, and nothing more is read (backpressure).
                await connection.flow.room(len(chunk))
                connection.flow.read(len(chunk))
                return chunk
            except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError,
                    OSError):
                return b""
            finally:
                connection.receiving = None
        return b""  # cancelled: draining

    async def _read_lines(self, stream: SocketStream, send: Sender,
                          connection: Connection) -> None:
        line_no = 0
        # The start of a line still arriving. A bytearray, and only the new bytes
        # searched for a newline: a 1 MiB line in 64-byte writes costs linear time.
        pending = bytearray()
        discarding = False  # inside a line already over the limit: drop until its end
        while chunk := await self._receive(stream, connection):
            if discarding:
                newline = chunk.find(b"\n")
                if newline < 0:
                    continue
                discarding = False
                line_no += 1
                send.flow.tail = len(chunk) - newline - 1  # still to be read as lines
                await send.send(_ready(self.admission.too_long(line_no)))
                chunk = chunk[newline + 1:]
            last = chunk.rfind(b"\n")
            if last < 0:
                pending += chunk
            else:
                block = bytes(pending) + chunk[:last] if pending else chunk[:last]
                pending = bytearray(chunk[last + 1:])
                send.flow.tail = len(pending)
                line_no = await self._block(line_no + 1, block, send)
            send.flow.tail = len(pending)
            if len(pending) > constants.MAX_LINE_BYTES:
                pending = bytearray()
                discarding = True
        send.flow.tail = 0
        if discarding:  # over the limit and never ended: still answered
            await send.send(_ready(self.admission.too_long(line_no + 1)))
        elif pending.strip() and not self._draining:
            # A last line without its newline is still a request (unless we cut the
            # connection while the client was sending it).
            await self._lines(line_no + 1, [bytes(pending)], send)

    async def _block(self, first_line: int, block: bytes,
                     send: Sender) -> int:
        """The complete lines of one read, decoded in one call when every one is a
        request (the usual case); else line by line. Returns the last line's number."""
        count = block.count(b"\n") + 1
        last_line = first_line + count - 1
        if count <= constants.CHUNK_LINES and len(block) <= constants.MAX_LINE_BYTES:
            requests = protocol.decode_block(block)
            # Fewer requests than lines: blank lines, which get no answer; the slow path
            # knows which.
            if requests is not None and len(requests) == count:
                await self._admit(range(first_line, last_line + 1), requests, send)
                return last_line
        await self._lines(first_line, block.split(b"\n"), send)
        return last_line

    async def _lines(self, first_line: int, lines: list[bytes],
                     send: Sender) -> None:
        """Lines decoded one by one, in runs of at most CHUNK_LINES (so the answers
        waiting on a connection are bounded in lines, not only in chunks)."""
        for start in range(0, len(lines), constants.CHUNK_LINES):
            numbers, requests = self.admission.decode(
                first_line + start, lines[start:start + constants.CHUNK_LINES])
            await self._admit(numbers, requests, send)

    async def _admit(self, numbers: Sequence[int], requests: list[Request],
                     send: Sender) -> None:
        """Admit each run of events up to the next query or command, which waits
        for its turn."""
        now = time.time()
        start = 0
        for index in [i for i, r in enumerate(requests) if r.__class__ in protocol.QUERY_CLASSES]:
            if index > start:
                await send.send(await self.admission.admit(
                    numbers[start:index], requests[start:index], now))
            turn = Turn(numbers[index], requests[index])  # type: ignore[arg-type]
            await send.send(turn)
            await turn.ran.wait()
            now = time.time()
            start = index + 1
        if start < len(requests):
            await send.send(await self.admission.admit(
                numbers[start:] if start else numbers, requests[start:] if start else requests,
                now))

    async def _write_answers(self, receive: MemoryObjectReceiveStream[Item],
                             stream: SocketStream) -> None:
        """Answers each item as soon as its commit resolves, so a client that sends
        without pause still reads its answers as it goes."""
        broken = False
        async with receive:
            async for item in receive:
                if isinstance(item, Turn):
                    out = [await self._run(item, broken)]
                else:
                    out = await _resolve(item)
                if out and not broken:
                    try:
                        await stream.send(b"".join(out))
                    except Exception:  # noqa: BLE001 - any failure to send: the client is gone
                        broken = True  # keep consuming so the reader is never blocked on us

    async def _run(self, turn: Turn, broken: bool) -> bytes:
        try:
            if broken and isinstance(turn.request, READ_ONLY):
                return b""  # nobody reads it: a large history is not built for nothing
            try:
                return await self._queries(turn.request)
            except Exception as exc:
                log.exception("request failed")
                return protocol.refusal(f"request failed: {exc}")
        finally:
            turn.ran.set()


def _ready(answer: bytes) -> Answers:
    out = Answers()
    out.results.append(answer)
    return out


async def _resolve(answers: Answers) -> list[bytes]:
    ticket = answers.ticket
    if ticket is not None:
        await ticket.future
        if ticket.error is None and not ticket.errors and not answers.copies:
            # Every event of the run went through: one pass, no lookup per line.
            ok = protocol.OK
            return [ok if r.__class__ is int else r for r in answers.results]  # type: ignore[misc]
    out: list[bytes] = []
    for result in answers.results:
        if isinstance(result, bytes):
            out.append(result)
        elif isinstance(result, Copy):
            out.append(await answer_copy(result, ticket))
        else:
            assert ticket is not None
            problem = ticket.line_error(result)
            out.append(protocol.OK if problem is None else protocol.error_line(result, problem))
    return out


# The answer resolution and a ready answer, by public names: the HTTP ingress
# (ingest/http.py) answers its lines exactly as the socket does.
resolve = _resolve
ready = _ready


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

