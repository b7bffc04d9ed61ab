"""One way to serve an aiohttp application (the loopback console and the remote listener):
its runner, its gated listening socket, its start-up refusal and its shielded stop."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import anyio
from aiohttp import web
from aiohttp.log import server_logger
from anyio.abc import TaskStatus

from runhook.core import constants
from runhook.core.schema import StartupError
from runhook.web.limits import Gate

Hook = Callable[[], None]


def _nothing() -> None:
    pass


async def serve_app(app: web.Application, address: str, host: str, port: int,
                    gate: Callable[[web.Server], Gate], *, header_s: float, setting: str,
                    refusal: str, url: str, logger: logging.Logger, server_log: logging.Logger = server_logger,
                    bound: Hook = _nothing, unbound: Hook = _nothing,
                    task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
    """Serve `app` until cancelled. aiohttp's keep-alive timeout (`header_s`) also
    bounds how long a connection may take to send its first request's headers; the
    `gate` caps and times the connections. `bound` runs once the socket listens
    (before readiness is told), `unbound` once it no longer does. A socket that cannot
    be bound is a StartupError: "cannot `refusal` `address`", naming `setting`."""
    runner = web.AppRunner(app, access_log=None, logger=server_log, keepalive_timeout=header_s,
                           shutdown_timeout=constants.HTTP_SHUTDOWN_S)
    await runner.setup()
    assert runner.server is not None
    listener: asyncio.Server | None = None
    try:
        try:
            # The loop's server: aiohttp's handler is an asyncio.Protocol, wrapped by the gate.
            listener = await asyncio.get_running_loop().create_server(
                gate(runner.server), host, port)
        except OSError as exc:
            raise StartupError(f"cannot {refusal} {address}: {exc.strerror or exc} "
                               f"({setting})") from None
        bound()
        logger.info("%s", url)
        task_status.started()
        await anyio.sleep_forever()
    finally:
        with anyio.CancelScope(shield=True):
            if listener is not None:
                listener.close()
                unbound()
            await runner.cleanup()
