"""The console's actions, each a POSTed form that the guard let through and whose
CSRF token matched: redeliver an execution, test an integration, enable one. Each
is the socket's command of the same name; the answer comes back as a flash message
on the page the action was taken from (POST, then redirect, then GET)."""

from __future__ import annotations

import logging
from collections.abc import Callable

import msgspec
from aiohttp import web

from runhook.ingest import queries
from runhook.ingest.protocol import Enable, Query, Redeliver, TestIntegration
from runhook.web.html import part, url
from runhook.web.views import Console

log = logging.getLogger("runhook.http")
_answer = msgspec.json.Decoder(dict[str, object]).decode


async def redeliver(console: Console, request: web.Request) -> web.StreamResponse:
    execution_id = request.match_info["id"]
    back = f"/executions/{part(execution_id)}"
    return await _act(console, request, Redeliver(id=execution_id), back,
                      lambda a: f"queued for redelivery: {execution_id}{queries.notes_of(a)}")


async def test(console: Console, request: web.Request) -> web.StreamResponse:
    form = await console.guard.checked_form(request)
    if form is None:
        return _refused()
    name = request.match_info.get("name") or form.get("integration", "")
    payload = form.get("payload", "").strip() or None

    def said(answer: dict[str, object]) -> str:
        test = answer["test"]
        assert isinstance(test, dict)
        error = f", {test['error']}" if test.get("error") else ""
        return (f"test of {name}: status {test.get('status') or '–'}{error} "
                f"(execution {test.get('execution_id') or 'not recorded'})")

    return await _run(console, TestIntegration(integration=name, payload=payload),
                      "/integrations", said)


async def enable(console: Console, request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    return await _act(console, request, Enable(integration=name), "/integrations",
                      lambda a: f"{name}: enabled")


Said = Callable[[dict[str, object]], str]


async def _act(console: Console, request: web.Request, query: Query, back: str,
               said: Said) -> web.StreamResponse:
    if await console.guard.checked_form(request) is None:
        return _refused()
    return await _run(console, query, back, said)


async def _run(console: Console, query: Query, back: str, said: Said) -> web.StreamResponse:
    answer = _answer(await queries.answer(query, console.daemon))
    text = said(answer) if answer.get("ok") else f"refused: {answer.get('error')}"
    log.info("console: %s: %s", type(query).__name__, text)
    return web.Response(status=303, headers={"Location": url(back, done=text,
                                                              sig=console.sign(text))})


def _refused() -> web.Response:
    return web.Response(status=403, text="refused: the form's CSRF token is missing or stale; "
                                         "reload the page and try again\n")
