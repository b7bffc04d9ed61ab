"""The remote listener (`[ingest]`): HTTP ingest and registry webhooks, with TLS, bearer
tokens, a connection cap and timeouts. Its own server: the loopback console stays apart."""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable

import anyio
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.typedefs import Handler
from anyio.abc import TaskStatus

from runhook.config.remote import Remote
from runhook.config.settings import Settings
from runhook.core.logs import LogLimit, Throttled
from runhook.core.schema import StartupError
from runhook.ingest.http import HttpIngress, Tokens, unauthorized
from runhook.ingest.ingress import Ingress
from runhook.sources.hooks import Hooks
from runhook.store.database import Store
from runhook.web.limits import Gate
from runhook.web.listen import serve_app

log = logging.getLogger("runhook.remote")
# aiohttp's own lines about this listener's connections: a malformed request is
# logged once per 10 s, as a warning without traceback (one client sent ~360 KB/s of
# tracebacks); a failure of ours still logs in full.
server_log = logging.getLogger("runhook.remote.server")
server_log.addFilter(Throttled((HttpProcessingError,)))

# The listener's Gate, once serve() made it: the handlers mark the connections that
# carried a valid token, which the gate then never closes to make room.
GATE = web.AppKey("gate", list)


def tls_context(remote: Remote) -> ssl.SSLContext | None:
    if remote.cert is None or remote.key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(remote.cert, remote.key)
    except (OSError, ssl.SSLError) as exc:
        raise StartupError(f"cannot use the TLS certificate {remote.cert} and key "
                           f"{remote.key}: {exc} (ingest.tls_cert, ingest.tls_key)") from None
    return context


def make_app(settings: Callable[[], Settings], ingress: Ingress,
             store: Store) -> web.Application:
    remote = settings().remote
    assert remote is not None
    http = HttpIngress(ingress, remote.idle_timeout)
    hooks = Hooks(settings, http, store, remote.idle_timeout)
    # (the configuration's Remote, its tokens): the object itself is held and compared,
    # not its id(), which a new object may take once the old one is freed.
    cached: list[tuple[object, Tokens]] = []
    refusals = LogLimit()

    def current_tokens() -> Tokens:
        """The tokens of the running configuration: a reload rotates them."""
        now = settings().remote
        if not cached or cached[0][0] is not now:
            cached[:] = [(now, Tokens(now.tokens if now is not None else ()))]
        return cached[0][1]

    async def events(request: web.Request) -> web.StreamResponse:
        # Checked before a byte of the body is read: a request without a valid
        # token gets 401 and nothing it sent is decoded, let alone evaluated.
        token = current_tokens().find(request.headers.get("Authorization"))
        if token is None:
            held = refusals.allow()
            if held is not None:
                log.warning("HTTP ingest: refused %s from %s: no valid bearer token%s",
                            request.path, request.remote,
                            f" (and {held} more refusals not logged)" if held else "")
            return unauthorized()
        for gate in app[GATE]:
            gate.authenticated(request.transport)
        return await http.events(request, token)

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    @web.middleware
    async def started(request: web.Request, handler: Handler) -> web.StreamResponse:
        for gate in request.app[GATE]:
            gate.started(request.transport)
        return await handler(request)

    app = web.Application(middlewares=[started])
    app[GATE] = []
    app.router.add_post("/v1/events", events)
    app.router.add_post("/v1/hooks/{name}", hooks.handle)
    app.router.add_get("/healthz", healthz)
    return app


async def serve(app: web.Application, remote: Remote, *,
                task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
    """Listen on `remote.host:port`, with TLS when configured. The header timeout
    bounds the TLS handshake and its shutdown too; at `max_connections` the oldest
    connection without a valid token is closed for the new one, and only when every
    one has a token does a new connection get 503."""
    context = tls_context(remote)

    def gate(server: web.Server) -> Gate:
        made = Gate(server, remote.max_connections, evict=True, tls=context,
                    tls_timeout=remote.header_timeout, first_request_s=remote.header_timeout)
        app[GATE].append(made)
        return made

    address = f"{remote.host}:{remote.port}"
    await serve_app(app, address, remote.host, remote.port, gate,
                    header_s=remote.header_timeout, setting="ingest.listen", refusal="listen on",
                    url=f"remote ingest on {'https' if context else 'http'}://{address}",
                    logger=log, server_log=server_log, task_status=task_status)
