"""`/integrations`: each integration's health, rate, in-flight count, last error (gone
once a delivery succeeds) and disabled state, with its test and enable forms."""

from __future__ import annotations

from aiohttp import web

from runhook.config.model import (
    DiscordIntegration,
    EmailIntegration,
    PagerDutyIntegration,
    SlackIntegration,
    TeamsIntegration,
    WebhookIntegration,
)
from runhook.web.html import page
from runhook.web.views import Console, html


def _destination(config: object) -> str:
    """Where an integration sends, in words (URLs kept as secrets are not shown)."""
    if isinstance(config, WebhookIntegration | PagerDutyIntegration):
        return config.url
    if isinstance(config, EmailIntegration):
        return f"SMTP {config.host} to {', '.join(config.to)}"
    if isinstance(config, SlackIntegration):
        return "Slack " + ("incoming webhook" if config.url_secret else "chat.postMessage")
    if isinstance(config, TeamsIntegration | DiscordIntegration):
        name = "Teams" if isinstance(config, TeamsIntegration) else "Discord"
        return f"{name} webhook (URL in secret {config.url_secret})"
    return "–"


async def integrations(console: Console, request: web.Request) -> web.Response:
    settings = console.daemon.settings
    rows = [{"status": i,
             "destination": settings.redactor(_destination(settings.integrations.get(i.name)))}
            for i in console.daemon.status().integrations]
    return html(page("integrations.html", "Integrations", "/integrations",
                     console.flash(request), rows=rows, token=console.guard.token,
                     names=list(settings.integrations)))
