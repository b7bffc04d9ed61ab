"""The silences JSON API on loopback: GET /api/silences, POST /api/silences (add),
POST /api/silences/{id}/expire; the same rules as the socket's `command.silence_*`."""

from __future__ import annotations

from typing import Any

import msgspec
from aiohttp import web

from runhook.core.schema import field_error
from runhook.ingest import silencing
from runhook.ingest.protocol import SilenceAdd


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=msgspec.json.encode(body), status=status,
                        content_type="application/json")


def _cross_site(request: web.Request) -> str | None:
    """Why a POST is refused as a browser's cross-site request, or None. A page on any
    site can make a browser POST to 127.0.0.1 ("simple" requests need no preflight),
    but not with Content-Type: application/json; an Origin from elsewhere is refused too."""
    if request.content_type != "application/json":
        return "send Content-Type: application/json"
    origin = request.headers.get("Origin")
    if origin is not None and origin.split("://", 1)[-1] != request.host:
        return "cross-origin requests are refused"
    return None


def add_routes(app: web.Application, daemon: silencing.Daemon) -> None:
    async def listing(request: web.Request) -> web.Response:
        return _json({"silences": silencing.listing(daemon.silences, silencing.now_of(daemon))})

    async def add(request: web.Request) -> web.Response:
        refusal = _cross_site(request)
        if refusal is not None:
            return _json({"error": refusal}, 415 if "Content-Type" in refusal else 403)
        try:
            query = msgspec.json.decode(await request.read(), type=SilenceAdd)
        except msgspec.ValidationError as exc:
            parsed = field_error(str(exc))
            message = f"field `{parsed[0]}`: {parsed[1]}" if parsed else str(exc)
            return _json({"error": message}, 400)
        except msgspec.DecodeError as exc:
            return _json({"error": f"not valid JSON: {exc}"}, 400)
        try:
            silence = await silencing.add(query, daemon, silencing.now_of(daemon))
        except silencing.Refused as exc:
            return _json({"error": str(exc)}, 400)
        return _json({"silence": silence}, 201)

    async def expire(request: web.Request) -> web.Response:
        refusal = _cross_site(request)
        if refusal is not None:
            return _json({"error": refusal}, 415 if "Content-Type" in refusal else 403)
        try:
            silence = await silencing.expire(request.match_info["id"], daemon, silencing.now_of(daemon))
        except silencing.Refused as exc:
            return _json({"error": str(exc)}, 404)
        return _json({"silence": silence})

    app.router.add_get("/api/silences", listing)
    app.router.add_post("/api/silences", add)
    app.router.add_post("/api/silences/{id}/expire", expire)
