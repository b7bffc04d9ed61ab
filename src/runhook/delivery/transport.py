"""One HTTP attempt over aiohttp: never follows redirects, keeps the first 1 KiB of the answer
(redacted before the cut), and describes failures without the URL (it may be a secret)."""

from __future__ import annotations

import functools
import os
import socket
from typing import NamedTuple

import aiohttp

from runhook.config.secrets import Redactor
from runhook.core import constants
from runhook.delivery.channels.webhook import Request
from runhook.delivery.ssrf import DestinationRefused, is_refusal

ENDPOINT = "the endpoint"


class Response(NamedTuple):
    status: int | None
    body: str  # redacted
    error: str | None  # redacted, and never a URL
    retry_after: str | None
    refused: bool = False  # no retry can help: the guard refused it, or the URL is invalid


@functools.lru_cache(maxsize=64)
def _timeout(seconds: float) -> aiohttp.ClientTimeout:
    return aiohttp.ClientTimeout(total=seconds)


async def post(session: aiohttp.ClientSession, request: Request, timeout: float,
               redact: Redactor) -> Response:
    try:
        async with session.post(request.url, data=request.body, headers=request.headers,
                                allow_redirects=False, timeout=_timeout(timeout)) as answer:
            # Past the cut by the longest secret, so one straddling it is seen whole.
            raw = await _read(answer.content, constants.RESPONSE_KEEP_BYTES + redact.margin)
            # The Location is not kept: it may be the URL itself, in another form.
            error = "redirect not followed" if 300 <= answer.status < 400 else None
            body = redact.keep(raw.decode("utf-8", "replace"), constants.RESPONSE_KEEP_BYTES)
            return Response(answer.status, body, error, answer.headers.get("Retry-After"))
    except DestinationRefused as exc:
        return Response(None, "", redact(f"destination refused: {exc}"), None, refused=True)
    except TimeoutError:
        return Response(None, "", f"timed out after {timeout:g}s", None)
    except aiohttp.ClientError as exc:
        refusal = is_refusal(exc)
        if refusal is not None:
            return Response(None, "", redact(f"destination refused: {refusal}"), None,
                            refused=True)
        return Response(None, "", redact(describe(exc)), None,
                        refused=isinstance(exc, aiohttp.InvalidURL))
    except OSError as exc:
        return Response(None, "", redact(describe(exc)), None)


async def _read(content: aiohttp.StreamReader, limit: int) -> bytes:
    """Up to `limit` bytes of a body (one read() returns only what has arrived)."""
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        chunk = await content.read(limit - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
        # A body that has all arrived needs no read to learn it ended: most answers
        # are one chunk, and the read that returns b"" cost a coroutine (3 % of an attempt).
        if content.at_eof():
            break
    return b"".join(chunks)


def describe(exc: BaseException) -> str:
    """A failed attempt in words, built from the error's kind and reason only: aiohttp's
    own texts carry the URL as yarl rewrote it, which redaction could miss."""
    match exc:
        case aiohttp.ClientConnectorDNSError():
            return f"cannot resolve the host of {ENDPOINT}{_reason(exc)}"
        case aiohttp.ClientConnectorCertificateError():
            detail = getattr(exc.certificate_error, "verify_message", "") or ""
            return f"{ENDPOINT} has an invalid TLS certificate" + (f": {detail}" if detail
                                                                  else "")
        case aiohttp.ClientSSLError():
            return f"the TLS handshake with {ENDPOINT} failed"
        case aiohttp.ClientConnectorError():
            return f"cannot connect to {ENDPOINT}{_reason(exc)}"
        case aiohttp.ServerDisconnectedError():
            return f"{ENDPOINT} closed the connection without answering"
        case aiohttp.ClientResponseError():
            return f"invalid HTTP response from {ENDPOINT}: {exc.message}"
        case aiohttp.ClientPayloadError():
            return f"{ENDPOINT} sent a broken response body"
        case aiohttp.InvalidURL():
            return "the URL is not valid"
        case OSError():
            return f"the connection to {ENDPOINT} failed{_reason(exc)}"
    return f"{type(exc).__name__} talking to {ENDPOINT}"


def _reason(exc: OSError) -> str:
    """The system's words for the error, e.g. ": connection refused": from its number
    (asyncio's own text names the address), or a resolver's message (names nothing)."""
    error = getattr(exc, "os_error", exc)
    if isinstance(error, socket.gaierror) and error.strerror:
        return f": {error.strerror.lower()}"
    errno = error.errno
    return f": {os.strerror(errno).lower()}" if isinstance(errno, int) and errno > 0 else ""
