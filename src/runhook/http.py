"""HTTP on loopback: health, readiness, Prometheus metrics, the status page, read-only JSON."""

from __future__ import annotations

import logging
from typing import Any, Protocol

import anyio
import msgspec
from aiohttp import web
from anyio.abc import TaskStatus
from prometheus_client import CONTENT_TYPE_LATEST

from runhook import status_page
from runhook.metrics import Metrics
from runhook.schema import StartupError
from runhook.store import Store

log = logging.getLogger("runhook.http")
STATES = ("PENDING", "FINISHED", "FAILED", "SKIPPED")


class Daemon(Protocol):
    metrics: Metrics

    async def readiness(self) -> dict[str, bool]: ...

    async def overview(self) -> dict[str, Any]: ...


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=msgspec.json.encode(body), status=status,
                        content_type="application/json")


def make_app(daemon: Daemon, store: Store) -> web.Application:
    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(request: web.Request) -> web.Response:
        checks = await daemon.readiness()
        return _json({"ready": all(checks.values()), "checks": checks},
                     200 if all(checks.values()) else 503)

    async def executions(request: web.Request) -> web.Response:
        query = request.query
        state = query.get("state")
        if state is not None and state not in STATES:
            return _json({"error": f"state must be one of {', '.join(STATES)}"}, 400)
        try:
            limit = int(query.get("limit", "50"))
            if not 1 <= limit <= 10_000:
                raise ValueError
        except ValueError:
            return _json({"error": "limit must be a whole number from 1 to 10000"}, 400)
        rows = await store.history(query.get("automation"), state, limit)
        return _json({"executions": rows})

    async def execution(request: web.Request) -> web.Response:
        found = await store.execution(request.match_info["id"])
        if found is None:
            return _json({"error": "no such execution"}, 404)
        return _json({"execution": found, "attempts": await store.attempts(found.id)})

    async def status(request: web.Request) -> web.Response:
        return _json(await daemon.overview())

    async def page(request: web.Request) -> web.Response:
        return web.Response(text=status_page.render(await daemon.overview()),
                            content_type="text/html")

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(body=daemon.metrics.render(),
                            headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/api/executions", executions)
    app.router.add_get("/api/executions/{id}", execution)
    app.router.add_get("/api/status", status)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/", page)
    return app


async def serve(app: web.Application, address: str, *,
                task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
    host, _, port = address.rpartition(":")
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host.strip("[]") or "127.0.0.1", int(port))
        try:
            await site.start()
        except OSError as exc:
            raise StartupError(f"cannot serve HTTP on {address}: "
                               f"{exc.strerror or exc} (server.http)") from None
        log.info("HTTP on http://%s", address)
        task_status.started()
        await anyio.sleep_forever()
    finally:
        with anyio.CancelScope(shield=True):
            await runner.cleanup()
