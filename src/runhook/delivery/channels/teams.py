"""Microsoft Teams: an Adaptive Card posted to a Power Automate Workflows webhook (pure).

What the vendor documents, and this module follows:
- A Workflows webhook ("Post to a channel when a webhook request is received")
  takes the bot-message envelope: `{"type": "message", "attachments": [{"contentType":
  "application/vnd.microsoft.card.adaptive", "content": <AdaptiveCard>}]}`; without
  that `attachments` list the flow fails ("'attachments' is of type 'Null'").
- The card: `"type": "AdaptiveCard"`, `"version"`, `"body"` of elements; Teams renders
  schema versions up to 1.5, so 1.4 works in every client. `msteams.width = "Full"`
  uses the channel's width. TextBlock `wrap: true`, or long text is cut at one line.
- A Teams message is at most about 28 KB; past it the post fails ("Request Entity too
  large", 413). The body is kept under that by cutting the text.
- The webhook answers 202 Accepted; it throttles past four requests a second.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from runhook.config.model import TeamsIntegration
from runhook.core.templates import Text
from runhook.delivery.channels.common import context_line, fit, render
from runhook.delivery.channels.webhook import USER_AGENT, Request

CARD_VERSION = "1.4"
CARD_SCHEMA = "http://adaptivecards.io/schemas/adaptive-card.json"
# Under Teams' 28 KB message limit, with room for what Power Automate adds around it.
MESSAGE_LIMIT_BYTES = 27 * 1024
# Severity as a container style (the band behind the title) and a text colour.
STYLES = {"INFO": ("accent", "Accent"), "WARN": ("warning", "Warning"),
          "ERROR": ("attention", "Attention")}


def card(title: str, text: str, severity: str, context: Mapping[str, Any]) -> dict[str, Any]:
    style, colour = STYLES[severity]
    body: list[dict[str, Any]] = [
        {"type": "Container", "style": style, "bleed": True, "items": [
            {"type": "TextBlock", "text": title, "weight": "Bolder", "size": "Medium",
             "color": colour, "wrap": True}]},
    ]
    if text:
        body.append({"type": "TextBlock", "text": text, "wrap": True})
    body.append({"type": "TextBlock", "text": context_line(context, "**"), "isSubtle": True,
                 "size": "Small", "wrap": True})
    return {"type": "message", "attachments": [{
        "contentType": "application/vnd.microsoft.card.adaptive",
        "contentUrl": None,
        "content": {"$schema": CARD_SCHEMA, "type": "AdaptiveCard", "version": CARD_VERSION,
                    "msteams": {"width": "Full"}, "body": body},
    }]}


def build(integration: TeamsIntegration, title: Text | None, text: Text | None, severity: str,
          context: Mapping[str, Any], secrets: Mapping[str, str]) -> Request:
    rendered = render(title, text, context)
    body = fit(lambda t, x: msgspec.json.encode(card(t, x, severity, context)), rendered,
               MESSAGE_LIMIT_BYTES)
    headers = {"User-Agent": USER_AGENT, "Content-Type": "application/json"}
    return Request(secrets[integration.url_secret], headers, body)
