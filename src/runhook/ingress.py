"""The events socket: NDJSON in, exactly one answer line per request line, in order."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import stat
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import TaskStatus

from runhook import constants, protocol
from runhook.acks import Ticket
from runhook.events import Event
from runhook.executions import event_timestamp
from runhook.protocol import BadLine, Query
from runhook.scope import Scopes
from runhook.store import INSERT_EVENT_ID, Store, Write

log = logging.getLogger("runhook.ingress")

QueryHandler = Callable[[Query], Awaitable[bytes]]
# What the answer writer of a connection waits on: a ready line, or the future of
# an event (its error, or None) with the idempotency id to forget if it failed.
Pending = bytes | tuple[asyncio.Future[str | None], int, str | None] | asyncio.Task[bytes]


class Ingress:
    def __init__(self, scopes: Scopes, store: Store, queries: QueryHandler) -> None:
        self._scopes = scopes
        self._store = store
        self._queries = queries
        self.recent_ids: dict[str, float] = {}
        self.events_received: dict[str, int] = {}
        self.lines_rejected = 0
        self.connections = 0
        self._server: asyncio.AbstractServer | None = None
        self._readers: set[asyncio.StreamReader] = set()
        self._handlers: set[asyncio.Task[Any]] = set()
        self.listening = False

    async def load_recent_ids(self) -> None:
        self.recent_ids = await self._store.recent_event_ids(
            time.time() - constants.IDEMPOTENCY_WINDOW_S)

    def prune_ids(self, now: float) -> None:
        horizon = now - constants.IDEMPOTENCY_WINDOW_S
        self.recent_ids = {k: v for k, v in self.recent_ids.items() if v >= horizon}

    async def serve(self, path: str, mode: int, *,
                    task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        _clear_stale_socket(Path(path))
        self._server = await asyncio.start_unix_server(self._connection, path)
        os.chmod(path, mode)
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
        """End every connection after the lines it already sent are answered."""
        for reader in self._readers:
            reader.feed_eof()  # read() returns what is buffered, then b""
        if self._handlers:
            await asyncio.wait(self._handlers, timeout=timeout)

    async def _connection(self, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._readers.add(reader)
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
        # Bounded: when the client does not read its answers, we stop reading its lines.
        answers: asyncio.Queue[Pending | None] = asyncio.Queue(constants.PENDING_ANSWERS)
        writing = asyncio.create_task(self._write_answers(answers, writer))
        line_no = 0
        pending = b""
        discarding = False  # inside a line already over the limit: drop until its end
        try:
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
                    await answers.put(_too_long(line_no, self))
                    chunk = chunk[newline + 1:]
                lines = (pending + chunk).split(b"\n")
                pending = lines.pop()
                for line in lines:
                    line_no += 1
                    if len(line) > constants.MAX_LINE_BYTES:
                        await answers.put(_too_long(line_no, self))
                        continue
                    result = await self._line(line_no, line)
                    if result is not None:
                        await answers.put(result)
                if len(pending) > constants.MAX_LINE_BYTES:
                    pending = b""
                    discarding = True
            if pending.strip() and not discarding:
                line_no += 1  # a last line without its newline is still a request
                result = await self._line(line_no, pending)
                if result is not None:
                    await answers.put(result)
        except (ConnectionError, OSError):
            pass
        finally:
            # Every line read gets its answer before the connection closes.
            await answers.put(None)
            with contextlib.suppress(Exception):
                await writing
            writer.close()
            self.connections -= 1
            self._readers.discard(reader)
            if task is not None:
                self._handlers.discard(task)

    async def _line(self, line_no: int, line: bytes) -> Pending | None:
        if not line.strip():
            return None  # blank lines are not requests
        try:
            request = protocol.decode(line)
        except BadLine as exc:
            self.lines_rejected += 1
            return protocol.error_line(line_no, str(exc))
        if isinstance(request, Query):
            return asyncio.ensure_future(self._queries(request))
        return await self._event(line_no, request)

    async def _event(self, line_no: int, event: Event) -> Pending:
        now = time.time()
        try:
            event_time = event_timestamp(event, now)
        except ValueError as exc:
            self.lines_rejected += 1
            return protocol.error_line(line_no, f"field `time`: {exc}")
        kind = event.__struct_config__.tag
        self.events_received[kind] = self.events_received.get(kind, 0) + 1  # type: ignore[index]
        event_id = event.id
        if event_id is not None:
            seen = self.recent_ids.get(event_id)
            if seen is not None and seen >= now - constants.IDEMPOTENCY_WINDOW_S:
                return protocol.OK_DUPLICATE
        actors = self._scopes.targets(event)
        parts = len(actors) + (event_id is not None)
        if parts == 0:
            return protocol.OK
        future: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        ticket = Ticket(future, parts)
        if event_id is not None:
            # Claimed now, so a duplicate pipelined right behind is caught too.
            self.recent_ids[event_id] = now
            await self._store.submit(Write([(INSERT_EVENT_ID, [(event_id, now)])], ticket.done))
        for actor in actors:
            await actor.inbox.send((event, ticket, event_time))  # full inbox: backpressure
        return (future, line_no, event_id)

    async def _write_answers(self, answers: asyncio.Queue[Pending | None],
                             writer: asyncio.StreamWriter) -> None:
        broken = False
        while True:
            item = await answers.get()
            out: list[bytes] = []
            done = item is None
            while item is not None:
                out.append(await self._resolve(item))
                try:
                    item = answers.get_nowait()
                except asyncio.QueueEmpty:
                    break
                if item is None:
                    done = True
            if out and not broken:
                try:
                    writer.write(b"".join(out))
                    await writer.drain()
                except (ConnectionError, OSError):
                    broken = True  # keep consuming so the reader is never blocked on us
            if done:
                return

    async def _resolve(self, item: Pending) -> bytes:
        if isinstance(item, bytes):
            return item
        if isinstance(item, asyncio.Task):
            try:
                return await item
            except Exception as exc:
                log.exception("query failed")
                return protocol.error_line(0, f"query failed: {exc}")
        future, line_no, event_id = item
        error = await future
        if error is None:
            return protocol.OK
        if event_id is not None:
            self.recent_ids.pop(event_id, None)  # not accepted: a retry must be evaluated
        return protocol.error_line(line_no, error)


def _too_long(line_no: int, ingress: Ingress) -> bytes:
    ingress.lines_rejected += 1
    return protocol.error_line(
        line_no, f"line is over {constants.MAX_LINE_BYTES} bytes (1 MiB); refused")


def _clear_stale_socket(path: Path) -> None:
    """Remove a socket file left by a daemon that died; refuse to start if one is alive."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        return
    if not stat.S_ISSOCK(mode):
        raise RuntimeError(f"{path} exists and is not a socket")
    import socket
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except OSError:
        path.unlink()
        return
    finally:
        probe.close()
    raise RuntimeError(f"another daemon is listening on {path}")

