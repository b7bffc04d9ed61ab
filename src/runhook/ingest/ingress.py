"""The events socket: NDJSON in, exactly one answer line per request line, in order."""

from __future__ import annotations

import logging
import socket
import stat
from collections.abc import Sequence
from contextlib import suppress
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import SocketStream, TaskStatus

from runhook.core import constants
from runhook.core.schema import StartupError
from runhook.evaluate.routing import Router
from runhook.ingest import protocol
from runhook.ingest.admission import Admission, Request
from runhook.ingest.budget import Budget, Flow
from runhook.ingest.idempotency import RecentIds
from runhook.ingest.pipeline import Pipeline, QueryHandler
from runhook.store.database import Store

log = logging.getLogger("runhook.ingress")


class Connection:
    """One socket client, as the pipeline reads and answers it (a Transport), and its
    reading state as drain sees it."""

    __slots__ = ("_ingress", "flow", "receiving", "stream")

    def __init__(self, ingress: Ingress, stream: SocketStream) -> None:
        self._ingress = ingress
        self.stream = stream
        self.receiving: anyio.CancelScope | None = None  # set while waiting for bytes
        self.flow = Flow(ingress.budget)

    async def receive(self) -> bytes:
        """The next bytes, or b"" at the end: the client's, or ours when draining.
        Only this wait is ever cancelled by drain, so no line already read (and
        perhaps already committed) loses its answer."""
        with anyio.CancelScope() as scope:
            self.receiving = scope
            if self._ingress.draining:
                scope.cancel()
            try:
                chunk = await self.stream.receive(constants.READ_CHUNK)
                # Over the budget: this read waits, and nothing more is read (backpressure).
                await self.flow.room(len(chunk))
                self.flow.read(len(chunk))
                return chunk
            except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError,
                    OSError):
                return b""
            finally:
                self.receiving = None
        return b""  # cancelled: draining

    async def write(self, data: bytes) -> None:
        await self.stream.send(data)

    def screen(self, numbers: Sequence[int], requests: list[Request]) -> None:
        """The socket's peers are trusted (the socket file's mode): nothing is screened."""

    def last_line(self) -> bool:
        # Not when we cut the connection while the client was sending it.
        return not self._ingress.draining


class Ingress:
    """Every connection is a task of one task group owned by `serve`; each is one
    conversation of the pipeline (its reader and its answer writer)."""

    def __init__(self, scopes: Router[Any], store: Store, queries: QueryHandler,
                 budget: Budget | None = None) -> None:
        self.admission = Admission(scopes, store)
        self.pipeline = Pipeline(self.admission, queries)
        # Shared with the HTTPS listener (web/remote.py): one budget for the daemon.
        self.budget = budget if budget is not None else Budget()
        self.connections = 0
        self._open: set[Connection] = set()
        self._accepting: anyio.CancelScope | None = None
        self.draining = False
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
        self.draining = True
        for connection in self._open:
            if connection.receiving is not None:
                connection.receiving.cancel()
        if self.connections:
            with anyio.move_on_after(timeout):
                await self._idle.wait()

    async def _connection(self, stream: SocketStream) -> None:
        connection = Connection(self, stream)
        self._open.add(connection)
        try:
            if self.connections > constants.MAX_SOCKET_CONNECTIONS:
                with suppress(anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                    await stream.send(protocol.refusal(
                        f"too many connections ({constants.MAX_SOCKET_CONNECTIONS}); "
                        "try again later"))
                return
            await self.pipeline.converse(connection, connection.flow)
        finally:
            connection.flow.close()
            self._open.discard(connection)
            self.connections -= 1
            if self.draining and not self.connections:
                self._idle.set()
            with anyio.CancelScope(shield=True):
                await stream.aclose()


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

