"""The console's pages, one module per page kind (as datasette's views/), and the
context they share. Imports web.html, web.guard and the rooms below web."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Protocol

from aiohttp import web

from runhook.core.metrics import Metrics
from runhook.ingest import commands
from runhook.store.database import Store
from runhook.web.guard import Guard
from runhook.web.html import page


class Daemon(commands.Daemon, Protocol):
    """What the HTTP server reads from the running daemon; the console's actions go
    through the same command functions as the socket's (ingest/commands.py)."""

    metrics: Metrics

    async def readiness(self) -> dict[str, bool]: ...

    async def overview(self) -> commands.Overview: ...


@dataclass(frozen=True, slots=True)
class Console:
    daemon: Daemon
    store: Store
    guard: Guard

    def flash(self, request: web.Request) -> str | None:
        """The message an action left for the page it redirected to. Signed, so a
        link from elsewhere cannot make the console say what it did not."""
        text, signature = request.query.get("done"), request.query.get("sig", "")
        # Bytes: compare_digest refuses non-ASCII str (a crafted `sig` was a 500).
        if text is None or not hmac.compare_digest(signature.encode(),
                                                   self.sign(text).encode()):
            return None
        return text

    def sign(self, text: str) -> str:
        return hmac.new(self.guard.token.encode(), text.encode(), "sha256").hexdigest()[:32]


def html(body: str, status: int = 200) -> web.Response:
    return web.Response(text=body, status=status, content_type="text/html")


def not_found(what: str) -> web.Response:
    return html(page("not_found.html", "Not found", "", what=what), 404)
