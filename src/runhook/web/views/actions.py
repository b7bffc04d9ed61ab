"""The console's actions, each a POSTed form that the guard let through and whose
CSRF token matched: redeliver an execution, test an integration, enable one. Each
is the socket's command of the same name; the answer comes back as a flash message
on the page the action was taken from (POST, then redirect, then GET)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from aiohttp import web

from runhook.ingest import commands
from runhook.ingest.protocol import Enable, Redeliver, TestIntegration
from runhook.web.html import part, url
from runhook.web.views import Console

log = logging.getLogger("runhook.http")
A = TypeVar("A")


async def redeliver(console: Console, request: web.Request) -> web.StreamResponse:
    execution_id = request.match_info["id"]
    back = f"/executions/{part(execution_id)}"
    if await console.guard.checked_form(request) is None:
        return _refused()
    return await _run(console, "Redeliver",
                      commands.redeliver(Redeliver(id=execution_id), console.daemon), back,
                      lambda a: f"queued for redelivery: {execution_id}{commands.notes_of(a)}")


async def test(console: Console, request: web.Request) -> web.StreamResponse:
    form = await console.guard.checked_form(request)
    if form is None:
        return _refused()
    name = request.match_info.get("name") or form.get("integration", "")
    payload = form.get("payload", "").strip() or None

    def said(answer: commands.Tested) -> str:
        test = answer.test
        error = f", {test['error']}" if test.get("error") else ""
        return (f"test of {name}: status {test.get('status') or '–'}{error} "
                f"(execution {test.get('execution_id') or 'not recorded'})")

    return await _run(console, "TestIntegration", commands.test(
        TestIntegration(integration=name, payload=payload), console.daemon),
        "/integrations", said)


async def enable(console: Console, request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    if await console.guard.checked_form(request) is None:
        return _refused()
    return await _run(console, "Enable", commands.enable(Enable(integration=name),
                                                         console.daemon),
                      "/integrations", lambda a: f"{name}: enabled")


async def _run(console: Console, what: str, command: Awaitable[A], back: str,
               said: Callable[[A], str]) -> web.StreamResponse:
    try:
        text = said(await command)
    except commands.Refused as exc:
        text = f"refused: {exc}"
    log.info("console: %s: %s", what, text)
    return web.Response(status=303, headers={"Location": url(back, done=text,
                                                              sig=console.sign(text))})


def _refused() -> web.Response:
    return web.Response(status=403, text="refused: the form's CSRF token is missing or stale; "
                                         "reload the page and try again\n")
