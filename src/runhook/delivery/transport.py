"""One HTTP attempt over aiohttp: never follows redirects, keeps the first 1 KiB of the answer."""

from __future__ import annotations

import functools
from typing import NamedTuple

import aiohttp

from runhook import constants
from runhook.delivery.ssrf import DestinationRefused, is_refusal
from runhook.delivery.webhook import Request


class Response(NamedTuple):
    status: int | None
    body: str
    error: str | None
    retry_after: str | None
    refused: bool = False


@functools.lru_cache(maxsize=64)
def _timeout(seconds: float) -> aiohttp.ClientTimeout:
    return aiohttp.ClientTimeout(total=seconds)


async def post(session: aiohttp.ClientSession, request: Request, timeout: float) -> Response:
    try:
        async with session.post(request.url, data=request.body, headers=request.headers,
                                allow_redirects=False, timeout=_timeout(timeout)) as answer:
            raw = await answer.content.read(constants.RESPONSE_KEEP_BYTES)
            error = None
            if 300 <= answer.status < 400:
                error = f"redirect to {answer.headers.get('Location', '?')} not followed"
            return Response(answer.status, raw.decode("utf-8", "replace"), error,
                            answer.headers.get("Retry-After"))
    except DestinationRefused as exc:
        return Response(None, "", f"destination refused: {exc}", None, refused=True)
    except TimeoutError:
        return Response(None, "", f"timed out after {timeout:g}s", None)
    except aiohttp.ClientError as exc:
        refusal = is_refusal(exc)
        if refusal is not None:
            return Response(None, "", f"destination refused: {refusal}", None, refused=True)
        return Response(None, "", f"{type(exc).__name__}: {exc}", None)
    except OSError as exc:
        return Response(None, "", f"{type(exc).__name__}: {exc}", None)
