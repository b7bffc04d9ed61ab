"""Slack messages: Block Kit with title, text, a context line and a severity colour (pure)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from runhook.config.model import SlackIntegration
from runhook.core.templates import Text
from runhook.delivery.channels.common import context_line, cut, render
from runhook.delivery.channels.webhook import USER_AGENT, Request

COLOURS = {"INFO": "#2eb886", "WARN": "#daa038", "ERROR": "#a30200"}
# Slack's limits: a header's plain text 150 characters, a section's text 3,000.
TITLE_LIMIT = 150
TEXT_LIMIT = 3000
# chat.postMessage answers 200 with {"ok": false, "error": …}; these errors are
# worth another attempt, the rest are final.
RETRIED_ERRORS = frozenset({"ratelimited", "internal_error", "fatal_error", "service_unavailable",
                            "request_timeout"})


def message(title: str, text: str, severity: str, context: Mapping[str, Any]) -> dict[str, Any]:
    line = context_line(context)
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": cut(title, TITLE_LIMIT)}},
    ]
    if text:
        blocks.append({"type": "section",
                       "text": {"type": "mrkdwn", "text": cut(text, TEXT_LIMIT)}})
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": line}]})
    return {"text": cut(title, TITLE_LIMIT),
            "attachments": [{"color": COLOURS[severity], "blocks": blocks}]}


def build(integration: SlackIntegration, title: Text | None, text: Text | None, severity: str,
          context: Mapping[str, Any], secrets: Mapping[str, str]) -> Request:
    body = message(*render(title, text, context), severity, context)
    headers = {"User-Agent": USER_AGENT, "Content-Type": "application/json; charset=utf-8"}
    if integration.url_secret is not None:
        url = secrets[integration.url_secret]
    else:
        url = integration.api_url
        body["channel"] = integration.channel
        headers["Authorization"] = f"Bearer {secrets[str(integration.token)]}"
    return Request(url, headers, msgspec.json.encode(body))


def interpret(status: int, body: str) -> tuple[int, str | None]:
    """Slack's answer as (effective status, error): chat.postMessage reports errors
    in a 200 body; incoming webhooks put the error code in a 4xx body."""
    if 200 <= status < 300:
        if body.startswith("{"):
            try:
                answer = msgspec.json.decode(body.encode())
            except msgspec.DecodeError:
                return status, None
            if isinstance(answer, dict) and answer.get("ok") is False:
                error = str(answer.get("error", "unknown_error"))
                return (429 if error == "ratelimited" else
                        503 if error in RETRIED_ERRORS else 400), error
        return status, None
    return status, body.strip()[:200] or None
