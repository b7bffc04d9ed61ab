"""Lines over HTTP (`POST /v1/events`): the socket's admission and answers, a bearer
token's scopes checked per line, answers streamed as their commits complete."""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from collections.abc import Sequence
from fnmatch import fnmatchcase

import anyio
from aiohttp import web

from runhook.config.remote import Token
from runhook.core import constants
from runhook.core.events import Event
from runhook.ingest import protocol
from runhook.ingest.admission import Admission, Request
from runhook.ingest.budget import Flow
from runhook.ingest.ingress import Ingress
from runhook.ingest.pipeline import Outcome, commit, resolve
from runhook.ingest.protocol import Query
from runhook.ingest.session import LineSession

log = logging.getLogger("runhook.ingest.http")

# One request body at most. Bounded so one client cannot stream forever on one
# request; a training job's backlog of an hour is far below it.
MAX_BODY_BYTES = 64 << 20
# Most bytes one read from the body takes: many lines per admission, bounded memory.
READ_BYTES = 256 * 1024
NDJSON = "application/x-ndjson"


# Prefixes of the ids sources/ gives the events it maps (MLflow, Hugging Face).
SOURCE_ID_PREFIXES = ("mlflow:", "hf:")


class Tokens:
    """The bearer tokens, compared in constant time: each candidate is hashed first,
    so neither the length nor any prefix of a real token shows in the timing, and
    every token is compared (no early exit telling which one was close)."""

    def __init__(self, tokens: Sequence[Token]) -> None:
        self._tokens = [(hashlib.sha256(t.secret).digest(), t) for t in tokens]

    def find(self, authorization: str | None) -> Token | None:
        if not authorization:
            return None
        scheme, _, given = authorization.partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            return None
        digest = hashlib.sha256(given.strip().encode("utf-8", "backslashreplace")).digest()
        found = None
        for expected, token in self._tokens:
            if hmac.compare_digest(digest, expected):
                found = token
        return found


def may_write(token: Token, location: str) -> bool:
    return any(fnmatchcase(location, pattern) for pattern in token.scopes)


def unauthorized(realm: str = "runhook") -> web.Response:
    return web.json_response({"ok": False, "error": "a valid bearer token is required"},
                             status=401, headers={"WWW-Authenticate": f'Bearer realm="{realm}"'})


class Body:
    """One `POST /v1/events` body, as the pipeline reads and answers it (a Transport):
    a token's scopes screened per line, answers streamed on the response."""

    __slots__ = ("_http", "flow", "request", "response", "token")

    def __init__(self, http: HttpIngress, request: web.Request, response: web.StreamResponse,
                 token: Token, flow: Flow) -> None:
        self._http = http
        self.request = request
        self.response = response
        self.token = token
        self.flow = flow

    async def receive(self) -> bytes:
        return await self._http.receive(self.request, self.flow) or b""

    async def write(self, data: bytes) -> None:
        try:
            # A client that stops reading its answers is cut off, not buffered for.
            with anyio.fail_after(self._http.send_s):
                await self.response.write(data)
        except Exception:
            if self.request.transport is not None:
                self.request.transport.abort()
            raise

    def screen(self, numbers: Sequence[int], requests: list[Request]) -> None:
        """A line the token may not send becomes its error, in place: an event outside
        its scopes, or a query or command from a token without `commands`."""
        token = self.token
        for i, request in enumerate(requests):
            if request.__class__ is bytes:
                continue
            if request.__class__ in protocol.QUERY_CLASSES:
                if not token.commands:
                    kind = request.__struct_config__.tag  # type: ignore[union-attr]
                    requests[i] = self._http.refuse(
                        numbers[i], f"token {token.name!r} may not send {kind} "
                                    "(it has no commands = true)")
                continue
            event: Event = request  # type: ignore[assignment]
            if not may_write(token, event.location):
                requests[i] = self._http.refuse(
                    numbers[i], f"token {token.name!r} may not write {event.location}")
            elif event.id is not None and event.id.startswith(SOURCE_ID_PREFIXES):
                # The ids the registry webhooks give their events: a token that
                # could send one could make the real delivery a duplicate.
                requests[i] = self._http.refuse(
                    numbers[i], f"field `id`: ids starting {' or '.join(SOURCE_ID_PREFIXES)} "
                                "are the registry webhooks' own")

    def last_line(self) -> bool:
        return True  # a body cut by the idle timeout: what was read is answered


class HttpIngress:
    """Shares the socket's Admission (so ids claimed over one are seen by the other),
    its pipeline and its budget; owns nothing but how a request's body is read and
    its answers written."""

    def __init__(self, ingress: Ingress, idle_s: float,
                 send_s: float = constants.HTTP_SEND_TIMEOUT_S) -> None:
        self.admission: Admission = ingress.admission
        self.pipeline = ingress.pipeline
        self.budget = ingress.budget  # the socket's: one budget for both transports
        self._idle_s = idle_s
        self.send_s = send_s

    async def commit(self, events: Sequence[Event], now: float | None = None) -> list[Outcome]:
        """Admit events and wait for their commits, one Outcome per event: how the
        registry webhooks hand their mapped events in."""
        return await commit(self.admission, events, time.time() if now is None else now)

    async def events(self, request: web.Request, token: Token) -> web.StreamResponse:
        if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
            return web.json_response({"ok": False, "error": "body over 64 MiB; send it in parts"},
                                     status=413)
        if request.content_type == "application/json":
            return await self._single(request, token)
        response = web.StreamResponse(headers={"Content-Type": NDJSON,
                                               "Cache-Control": "no-store"})
        response.enable_chunked_encoding()
        # Headers go out now, before the body is read: the client reads answers
        # while it is still sending (the socket's pipelining, over one request). So
        # the 200 says only that the request was taken: each line's answer is its
        # acknowledgement (README, "HTTP ingest").
        await response.prepare(request)
        flow = Flow(self.budget)
        try:
            await self.pipeline.converse(Body(self, request, response, token, flow), flow,
                                         LineSession(max_body=MAX_BODY_BYTES))
        finally:
            flow.close()
        try:
            await response.write_eof()
        except (ConnectionError, RuntimeError):
            pass  # the client left: its answers were committed all the same
        return response

    async def receive(self, request: web.Request, flow: Flow) -> bytes | None:
        """The next bytes of the body; b"" at its end, None when the client sent
        nothing for the idle timeout (a stalled or slowloris client). Then waits
        for room in the budget (outside the timeout: that wait is ours, not the
        client's), reading nothing more meanwhile."""
        chunk: bytes | None = None
        with anyio.move_on_after(self._idle_s):
            try:
                chunk = await request.content.read(READ_BYTES)
            except (ConnectionError, web.HTTPException, OSError):
                chunk = b""
        if chunk is None:
            log.info("HTTP ingest: nothing received for %gs from %s; answering what was read",
                     self._idle_s, request.remote)
            return None
        await flow.room(len(chunk))
        if request.transport is None or request.transport.is_closing():
            # The client hung up: what it sent and was not yet admitted is not
            # acknowledged, and no one can be told; dropped, so a handler does not
            # outlive its connection's slot with work still to admit.
            return b""
        flow.read(len(chunk))
        return chunk

    async def _single(self, request: web.Request, token: Token) -> web.Response:
        """Content-Type application/json: the body is one request, newlines and all,
        read whole before anything is answered; the status is its outcome (200 once
        committed, 4xx refused, 503 when its commit failed and it may be sent again)."""
        flow = Flow(self.budget)
        try:
            body = bytearray()
            while chunk := await self.receive(request, flow):
                body += chunk
                if len(body) > constants.MAX_LINE_BYTES:
                    return _single_answer(413, self.admission.too_long(1))
            if chunk is None:
                return _single_answer(408, protocol.refusal(
                    f"the body did not arrive within {self._idle_s:g}s"))
            if not body.strip():
                return _single_answer(400, protocol.refusal("the body is empty: send one "
                                                            "JSON object"))
            _, requests = self.admission.decode(1, [bytes(body)])
            if isinstance(requests[0], bytes):
                return _single_answer(400, requests[0])
            Body(self, request, web.StreamResponse(), token, flow).screen([1], requests)
            request_ = requests[0]
            if isinstance(request_, bytes):
                return _single_answer(403, request_)
            if isinstance(request_, Query):
                answer = await self.pipeline.run(request_)
                return _single_answer(200 if answer.startswith(protocol.OK[:-2]) else 400,
                                      answer)
            answers = await self.admission.admit([1], requests, time.time())
            flow.settle(answers.ticket)
            out = b"".join(await resolve(answers))
            if out.startswith(protocol.OK[:-2]):
                return _single_answer(200, out)
            # Refused before admission (its `time`) is the sender's; a failed commit not.
            return _single_answer(400 if isinstance(answers.results[0], bytes) else 503, out)
        finally:
            flow.close()

    def refuse(self, line_no: int, message: str) -> bytes:
        self.admission.lines_rejected += 1
        return protocol.error_line(line_no, message)


def _single_answer(status: int, answer: bytes) -> web.Response:
    return web.Response(status=status, body=answer, content_type="application/json",
                        headers={"Cache-Control": "no-store"})
