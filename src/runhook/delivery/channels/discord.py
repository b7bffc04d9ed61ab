"""Discord: one embed, coloured by severity, through an execute-webhook URL (pure).

What Discord documents (Webhook Resource, "Execute Webhook"; Message Resource,
"Embed Limits"), and this module follows:
- POST the webhook URL with JSON `{"content"?, "username"?, "embeds": [...],
  "allowed_mentions"}`; at least one of content or embeds. Answer: 204 No Content
  (200 with the message when `?wait=true`); 429 with Retry-After when rate limited.
- Embed limits: title 256 characters, description 4096, footer text 2048, author name
  256, 25 fields; and 6000 characters in all across every embed of the message.
- `color` is an integer (0xRRGGBB); `timestamp` an ISO 8601 time shown in the footer.
- `allowed_mentions: {"parse": []}`: a run named "@everyone" must not ping a server.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from runhook.config.model import DiscordIntegration
from runhook.core.templates import Text
from runhook.delivery.channels.common import context_line, cut, render
from runhook.delivery.channels.webhook import USER_AGENT, Request

TITLE_LIMIT = 256
DESCRIPTION_LIMIT = 4096
FOOTER_LIMIT = 2048
EMBED_TOTAL_LIMIT = 6000
USERNAME_LIMIT = 80
# The Slack attachment colours, as Discord's integers.
COLOURS = {"INFO": 0x2EB886, "WARN": 0xDAA038, "ERROR": 0xA30200}


def message(title: str, text: str, severity: str, context: Mapping[str, Any],
            username: str | None = None) -> dict[str, Any]:
    title = cut(title, TITLE_LIMIT)
    footer = cut(context_line(context, ""), FOOTER_LIMIT)
    # The 6000 are shared: the description gets what title and footer leave.
    room = min(DESCRIPTION_LIMIT, EMBED_TOTAL_LIMIT - len(title) - len(footer))
    embed: dict[str, Any] = {"title": title, "color": COLOURS[severity],
                             "footer": {"text": footer}}
    if text:
        embed["description"] = cut(text, room)
    if context.get("event_time"):
        embed["timestamp"] = context["event_time"]
    body: dict[str, Any] = {"embeds": [embed], "allowed_mentions": {"parse": []}}
    if username:
        body["username"] = cut(username, USERNAME_LIMIT)
    return body


def build(integration: DiscordIntegration, title: Text | None, text: Text | None,
          severity: str, context: Mapping[str, Any], secrets: Mapping[str, str]) -> Request:
    body = message(*render(title, text, context), severity, context, integration.username)
    headers = {"User-Agent": USER_AGENT, "Content-Type": "application/json"}
    return Request(secrets[integration.url_secret], headers, msgspec.json.encode(body))
