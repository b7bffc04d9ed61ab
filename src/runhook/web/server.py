"""HTTP on loopback: health, readiness, Prometheus metrics, the console's pages and actions,
read-only JSON but for silences."""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import msgspec
from aiohttp import web
from anyio.abc import TaskStatus
from prometheus_client import CONTENT_TYPE_LATEST

from runhook.core import constants
from runhook.core.executions import STATES
from runhook.core.schema import StartupError
from runhook.store.database import Store
from runhook.store.rows import Execution
from runhook.web import silences
from runhook.web.guard import Guard
from runhook.web.limits import DEFAULT_LIMITS, Gate, Limits, deadline
from runhook.web.listen import serve_app
from runhook.web.session import Login
from runhook.web.views import (
    Console,
    Daemon,
    actions,
    automations,
    integrations,
    overview,
    runs,
)
from runhook.web.views import execution as execution_view
from runhook.web.views import executions as executions_view

log = logging.getLogger("runhook.http")
LOGIN = web.AppKey("login", Login)


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=msgspec.json.encode(body), status=status,
                        content_type="application/json")


def make_app(daemon: Daemon, store: Store, login: Login, limits: Limits = DEFAULT_LIMITS,
             guard: Guard | None = None) -> web.Application:
    guard = guard or Guard()
    console = Console(daemon, store, guard)

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(request: web.Request) -> web.Response:
        checks = await daemon.readiness()
        return _json({"ready": all(checks.values()), "checks": checks},
                     200 if all(checks.values()) else 503)

    async def executions(request: web.Request) -> web.StreamResponse:
        query = request.query
        state = query.get("state")
        if state is not None and state not in STATES:
            return _json({"error": f"state must be one of {', '.join(STATES)}"}, 400)
        most = constants.HTTP_MAX_EXECUTIONS
        try:
            limit = int(query.get("limit", "50"))
            if not 1 <= limit <= most:
                raise ValueError
        except ValueError:
            return _json({"error": f"limit must be a whole number from 1 to {most}"}, 400)
        # Streamed: a client that stops reading holds one page of rows, one chunk
        # and what the sockets buffer, not the whole answer.
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        chunk = bytearray(b'{"executions":[')
        separator = b""
        async for page in _pages(store, query.get("automation"), state, limit):
            for row in page:
                chunk += separator
                chunk += _encode(row)
                separator = b","
                if len(chunk) >= constants.HTTP_CHUNK_BYTES:
                    await response.write(bytes(chunk))
                    chunk.clear()
        chunk += b"]}"
        await response.write(bytes(chunk))
        return response

    async def execution(request: web.Request) -> web.Response:
        found = await store.execution(request.match_info["id"])
        if found is None:
            return _json({"error": "no such execution"}, 404)
        return _json({"execution": found, "attempts": await store.attempts(found.id)})

    async def status(request: web.Request) -> web.Response:
        return _json(await daemon.overview())

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(body=daemon.metrics.render(),
                            headers={"Content-Type": CONTENT_TYPE_LATEST})

    # The guard inside the deadline: its refusals and headers are sent in time too.
    # The session inside the guard: a rebinding page is refused before it learns
    # anything, even that a login exists.
    app = web.Application(middlewares=[deadline(limits), guard.middleware(),
                                       login.middleware()])
    app[LOGIN] = login
    app.router.add_get("/login", login.login)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/api/executions", executions)
    app.router.add_get("/api/executions/{id}", execution)
    app.router.add_get("/api/status", status)
    app.router.add_get("/metrics", metrics)
    pages: list[tuple[str, str, Callable[[Console, web.Request], Awaitable[Any]]]] = [
        ("GET", "/", overview.overview),
        ("GET", "/automations", automations.automations),
        ("GET", "/automations/{name}", automations.automation),
        ("GET", "/executions", executions_view.executions),
        ("GET", "/executions/{id}", execution_view.execution),
        ("GET", "/runs", runs.runs),
        ("GET", "/runs/{id}", runs.run),
        ("GET", "/integrations", integrations.integrations),
        ("POST", "/executions/{id}/redeliver", actions.redeliver),
        ("POST", "/integrations/test", actions.test),
        ("POST", "/integrations/{name}/test", actions.test),
        ("POST", "/integrations/{name}/enable", actions.enable),
    ]
    for method, path, view in pages:
        app.router.add_route(method, path, functools.partial(view, console))
    silences.add_routes(app, daemon)
    return app


_encode = msgspec.json.Encoder().encode


async def _pages(store: Store, automation: str | None, state: str | None,
                 limit: int) -> AsyncIterator[list[Execution]]:
    """The newest `limit` executions, read HTTP_PAGE_ROWS at a time (keyset paging:
    each page starts below the last row of the one before)."""
    before: tuple[float, str] | None = None
    while limit > 0:
        size = min(constants.HTTP_PAGE_ROWS, limit)
        page = await store.history(automation, state, size, before=before)
        if page:
            yield page
        if len(page) < size:
            return
        limit -= size
        before = (page[-1].created_at, page[-1].id)


async def serve(app: web.Application, address: str, limits: Limits = DEFAULT_LIMITS, *,
                task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
    """Serve `app` on `address` with the connection cap and the header timeout of
    `limits`. The console's login file exists while it listens: written with a new
    token once bound, removed when it stops."""
    host, _, port = address.rpartition(":")
    login = app[LOGIN]

    def bound() -> None:
        try:
            login.rotate()
        except OSError as exc:
            raise StartupError(f"cannot write the console's login file {login.path}: "
                               f"{exc.strerror or exc} (server.socket's directory)") from None

    await serve_app(app, address, host.strip("[]") or "127.0.0.1", int(port),
                    lambda server: Gate(server, limits.connections), header_s=limits.header_s,
                    setting="server.http", refusal="serve HTTP on", url=f"HTTP on http://{address}",
                    logger=log, bound=bound, unbound=login.remove, task_status=task_status)
