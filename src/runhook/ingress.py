"""The events socket: NDJSON in, exactly one answer line per request line, in order."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
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
from runhook.idempotency import RecentIds
from runhook.protocol import BadLine, Query
from runhook.schema import StartupError
from runhook.scope import ScopeActor, Scopes
from runhook.statements import INSERT_EVENT_ID
from runhook.store import Store, Write

log = logging.getLogger("runhook.ingress")

QueryHandler = Callable[[Query], Awaitable[bytes]]


class Answers:
    """The answers to one chunk of lines, in line order. Each is a ready line, a
    query's task, or the line number of an event waiting for the chunk's commit."""

    __slots__ = ("ids", "results", "ticket")

    def __init__(self) -> None:
        self.results: list[bytes | int | asyncio.Task[bytes]] = []
        self.ticket: Ticket | None = None
        self.ids: list[str] = []  # idempotency ids claimed by this chunk


class Ingress:
    def __init__(self, scopes: Scopes, store: Store, queries: QueryHandler) -> None:
        self._scopes = scopes
        self._store = store
        self._queries = queries
        self.recent_ids = RecentIds(store)
        self.events_received: dict[str, int] = {}
        self.lines_rejected = 0
        self.connections = 0
        self._server: asyncio.AbstractServer | None = None
        self._readers: set[asyncio.StreamReader] = set()
        self._handlers: set[asyncio.Task[Any]] = set()
        self.listening = False

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
        answers: asyncio.Queue[Answers | None] = asyncio.Queue(constants.PENDING_CHUNKS)
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
                    refused = Answers()
                    refused.results.append(self._too_long(line_no))
                    await answers.put(refused)
                    chunk = chunk[newline + 1:]
                lines = (pending + chunk).split(b"\n")
                pending = lines.pop()
                if lines:
                    await answers.put(await self._chunk(line_no + 1, lines))
                    line_no += len(lines)
                if len(pending) > constants.MAX_LINE_BYTES:
                    pending = b""
                    discarding = True
            if pending.strip() and not discarding:
                # A last line without its newline is still a request.
                await answers.put(await self._chunk(line_no + 1, [pending]))
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

    async def _chunk(self, first_line: int, lines: list[bytes]) -> Answers:
        """Decode a chunk's lines and hand its events to the actors, one batch per
        actor: a chunk costs one ticket and one write per actor, not one per line."""
        out = Answers()
        batches: dict[ScopeActor, list[tuple[Event, float, int]]] = {}
        ids: list[tuple[str, float]] = []
        now = time.time()
        targets = self._scopes.targets
        horizon = now - constants.IDEMPOTENCY_WINDOW_S
        # First pass: decode. Lines that are not events are answered in place.
        decoded: list[tuple[int, bytes | asyncio.Task[bytes] | tuple[Event, float]]] = []
        for line_no, line in enumerate(lines, first_line):
            if len(line) > constants.MAX_LINE_BYTES:
                decoded.append((line_no, self._too_long(line_no)))
                continue
            if not line.strip():
                continue  # blank lines are not requests
            try:
                request = protocol.decode(line)
            except BadLine as exc:
                self.lines_rejected += 1
                decoded.append((line_no, protocol.error_line(line_no, str(exc))))
                continue
            if isinstance(request, Query):
                decoded.append((line_no, asyncio.ensure_future(self._queries(request))))
                continue
            try:
                decoded.append((line_no, (request, event_timestamp(request, now))))
            except ValueError as exc:
                self.lines_rejected += 1
                decoded.append((line_no, protocol.error_line(line_no, f"field `time`: {exc}")))
        # One lookup for the chunk's idempotency ids that memory does not know.
        with_ids = [item[0].id for _, item in decoded
                    if isinstance(item, tuple) and item[0].id is not None]
        accepted = await self.recent_ids.accepted(with_ids, horizon) if with_ids else set()
        # Second pass: deduplicate, claim, route.
        for line_no, item in decoded:
            if not isinstance(item, tuple):
                out.results.append(item)
                continue
            event, event_time = item
            kind = str(event.__struct_config__.tag)
            self.events_received[kind] = self.events_received.get(kind, 0) + 1
            event_id = event.id
            if event_id is not None:
                if event_id in accepted or self.recent_ids.seen(event_id, horizon):
                    out.results.append(protocol.OK_DUPLICATE)
                    continue
                # Claimed now, so a duplicate right behind (even in this chunk) is caught.
                self.recent_ids.claim(event_id, now)
                ids.append((event_id, now))
                out.ids.append(event_id)
            actors = targets(event)
            if not actors and event_id is None:
                out.results.append(protocol.OK)
                continue
            out.results.append(line_no)
            for actor in actors:
                batch = batches.get(actor)
                if batch is None:
                    batch = batches[actor] = []
                batch.append((event, event_time, line_no))
        parts = len(batches) + (1 if ids else 0)
        if parts:
            ticket = out.ticket = Ticket(asyncio.get_running_loop().create_future(), parts)
            if ids:
                await self._store.submit(Write([(INSERT_EVENT_ID, ids)], ticket.done))
            for actor, batch in batches.items():
                try:
                    # No yield to the loop per send while there is room (up to 100
                    # actors a chunk); a full inbox makes us wait: backpressure.
                    actor.inbox.send_nowait((batch, ticket))
                except anyio.WouldBlock:
                    await actor.inbox.send((batch, ticket))
        return out

    async def _write_answers(self, answers: asyncio.Queue[Answers | None],
                             writer: asyncio.StreamWriter) -> None:
        broken = False
        while True:
            item = await answers.get()
            out: list[bytes] = []
            done = item is None
            while item is not None:
                await self._resolve(item, out)
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

    async def _resolve(self, answers: Answers, out: list[bytes]) -> None:
        ticket = answers.ticket
        error = await ticket.future if ticket is not None else None
        if answers.ids:
            if error is None:
                self.recent_ids.committed(answers.ids)
            else:
                self.recent_ids.release(answers.ids)  # not accepted: a retry is evaluated
        for result in answers.results:
            if isinstance(result, bytes):
                out.append(result)
            elif isinstance(result, int):
                assert ticket is not None
                problem = error or ticket.errors.get(result)
                out.append(protocol.OK if problem is None
                           else protocol.error_line(result, problem))
            else:
                try:
                    out.append(await result)
                except Exception as exc:
                    log.exception("request failed")
                    out.append(protocol.refusal(f"request failed: {exc}"))

    def _too_long(self, line_no: int) -> bytes:
        self.lines_rejected += 1
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

