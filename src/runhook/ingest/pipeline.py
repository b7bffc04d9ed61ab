"""The one read/admit/answer loop over a LineSession: lines decoded and admitted in runs,
a query or command run in its turn, answers written as their commits resolve. The
socket (ingress.py) and HTTPS (http.py) only say how bytes come in and go out."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

import anyio
import msgspec
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from runhook.core import constants
from runhook.core.events import Event
from runhook.ingest import protocol
from runhook.ingest.admission import Admission, Answers, Copy, Request, answer_copy
from runhook.ingest.budget import Flow
from runhook.ingest.protocol import Query
from runhook.ingest.session import Frame, Lines, LineSession, OverBody, TooLong

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


class Transport(Protocol):
    """How one connection's bytes come in and its answers go out."""

    async def receive(self) -> bytes:
        """The next bytes, charged to the budget; b"" at the end."""

    async def write(self, data: bytes) -> None:
        """Send answers; raises when the client is gone."""

    def screen(self, numbers: Sequence[int], requests: list[Request]) -> None:
        """Turn, in place, each request this client may not send into its error line."""

    def last_line(self) -> bool:
        """Whether a last line without its newline is still a request."""


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


class Pipeline:
    """The admission and the command handler one transport's connections share, and
    how `now` is taken: once per run of events admitted (a run ends at a query or
    command, which may take a while)."""

    def __init__(self, admission: Admission, queries: QueryHandler,
                 clock: Callable[[], float] = time.time) -> None:
        self.admission = admission
        self._queries = queries
        self._clock = clock

    async def converse(self, transport: Transport, flow: Flow,
                       session: LineSession | None = None) -> None:
        """Read, admit and answer until the input ends and every line is answered."""
        session = session or LineSession()
        send, receive = anyio.create_memory_object_stream[Item](session.depth)
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._write_answers, receive, transport, session)
            async with send:  # closing it ends the writer once all is answered
                sender = Sender(send, flow)
                while chunk := await transport.receive():
                    if not await self._frames(session.receive(chunk), transport, sender):
                        return
                    flow.tail = session.tail
                flow.tail = 0
                await self._frames(session.end(transport.last_line()), transport, sender)

    async def _frames(self, frames: list[Frame], transport: Transport, send: Sender) -> bool:
        """Admit what the session framed; False once it read all it will."""
        for frame in frames:
            send.flow.tail = frame.tail  # still to be read as lines
            if frame.__class__ is Lines:
                await self._lines(frame, transport, send)
            elif isinstance(frame, TooLong):
                await send.send(ready(self.admission.too_long(frame.line_no)))
            elif isinstance(frame, OverBody):
                await send.send(ready(protocol.refusal(
                    f"body over {frame.limit >> 20} MiB: nothing after line {frame.line_no} "
                    "was read; send the rest in another request")))
                return False
        return True

    async def _lines(self, lines: Lines, transport: Transport, send: Sender) -> None:
        """Decoded in one call when every line is a request (the usual case); else
        line by line, in runs of at most CHUNK_LINES (so the answers waiting on a
        connection are bounded in lines, not only in chunks)."""
        if lines.count <= constants.CHUNK_LINES and len(lines.data) <= constants.MAX_LINE_BYTES:
            requests = protocol.decode_block(lines.data)
            # Fewer requests than lines: blank lines, which get no answer; the slow path
            # knows which.
            if requests is not None and len(requests) == lines.count:
                await self._admit(range(lines.first, lines.last + 1), requests, transport,
                                  send)
                return
        split = lines.data.split(b"\n")
        for start in range(0, len(split), constants.CHUNK_LINES):
            numbers, requests = self.admission.decode(
                lines.first + start, split[start:start + constants.CHUNK_LINES])
            await self._admit(numbers, requests, transport, send)

    async def _admit(self, numbers: Sequence[int], requests: list[Request],
                     transport: Transport, send: Sender) -> None:
        """Screened, then admitted a run of events at a time up to the next query or
        command, which waits for its turn. Queries are told by class, not isinstance:
        the classes of the run are gathered in C (most runs hold no query at all),
        and only a run that has one is searched line by line."""
        transport.screen(numbers, requests)
        start = 0
        queries = () if protocol.QUERY_CLASSES.isdisjoint(set(map(type, requests))) else \
            [i for i, r in enumerate(requests) if r.__class__ in protocol.QUERY_CLASSES]
        for index in queries:
            if index > start:
                await send.send(await self.admission.admit(
                    numbers[start:index], requests[start:index], self._clock()))
            turn = Turn(numbers[index], requests[index])  # type: ignore[arg-type]
            await send.send(turn)
            await turn.ran.wait()
            start = index + 1
        if start < len(requests):
            await send.send(await self.admission.admit(
                numbers[start:] if start else numbers, requests[start:] if start else requests,
                self._clock()))

    async def _write_answers(self, receive: MemoryObjectReceiveStream[Item],
                             transport: Transport, session: LineSession) -> None:
        """Answers each item as soon as its commit resolves, so a client that sends
        without pause still reads its answers as it goes."""
        broken = False
        async with receive:
            async for item in receive:
                slot = session.slot()
                if isinstance(item, Turn):
                    out = await self.run(item.request, item, broken)
                else:
                    out = b"".join(await resolve(item))
                out = session.answer(slot, out)
                if out and not broken:
                    try:
                        await transport.write(out)
                    except Exception:  # noqa: BLE001 - any failure to send: the client is gone
                        broken = True  # keep consuming so the reader is never blocked on us

    async def run(self, request: Query, turn: Turn | None = None, broken: bool = False) -> bytes:
        """A query's or command's answer line; a failure is its refusal."""
        try:
            if broken and isinstance(request, READ_ONLY):
                return b""  # nobody reads it: a large history is not built for nothing
            try:
                return await self._queries(request)
            except Exception as exc:
                log.exception("request failed")
                return protocol.refusal(f"request failed: {exc}")
        finally:
            if turn is not None:
                turn.ran.set()


def ready(answer: bytes) -> Answers:
    """An answer known at once (an error line)."""
    return Answers([answer])


async def resolve(answers: Answers) -> list[bytes]:
    """The answer lines of a run, once its commits resolved."""
    ticket = answers.ticket
    if ticket is not None:
        await ticket.future
        if ticket.error is None and not ticket.errors and not answers.copies:
            # Every event of the run went through: one pass, no lookup per line;
            # none when every line waited for the ticket (a range).
            ok = protocol.OK
            if answers.results.__class__ is range:
                return [ok * len(answers.results)]
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


class Outcome(msgspec.Struct, frozen=True):
    """What became of one event handed in by the daemon itself (a source): committed,
    a duplicate of one committed before, or not accepted and why."""

    error: str | None = None
    duplicate: bool = False


_OK = Outcome()
_DUPLICATE = Outcome(duplicate=True)


class _Refusal(msgspec.Struct):
    error: str


_refusal = msgspec.json.Decoder(_Refusal).decode


async def commit(admission: Admission, events: Sequence[Event], now: float) -> list[Outcome]:
    """Admit events (numbered from 1) and wait for their commits: one Outcome each,
    with no answer line built for an event that went through."""
    answers = await admission.admit(range(1, len(events) + 1), events, now)
    ticket = answers.ticket
    if ticket is not None:
        await ticket.future
    out: list[Outcome] = []
    for result in answers.results:
        if result.__class__ is int:
            assert ticket is not None
            problem = ticket.line_error(result)
            out.append(_OK if problem is None else Outcome(error=f"line {result}: {problem}"))
            continue
        line = await answer_copy(result, ticket) if isinstance(result, Copy) else result
        if line == protocol.OK:
            out.append(_OK)
        elif line == protocol.OK_DUPLICATE:
            out.append(_DUPLICATE)
        else:  # refused before its commit (its `time`, its id unreadable): rare
            out.append(Outcome(error=_refusal(line).error))  # type: ignore[arg-type]
    return out
