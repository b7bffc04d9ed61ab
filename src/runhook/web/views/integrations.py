"""`/integrations`: each integration's health, rate, in-flight count, last error (gone
once a delivery succeeds) and disabled state, with its test and enable forms."""

from __future__ import annotations

from html import escape

from aiohttp import web

from runhook.config.model import (
    DiscordIntegration,
    EmailIntegration,
    PagerDutyIntegration,
    SlackIntegration,
    TeamsIntegration,
    WebhookIntegration,
)
from runhook.core.status import IntegrationStatus
from runhook.web.html import badge, button, page, part, table
from runhook.web.views import Console, html


def health(status: IntegrationStatus) -> str:
    if status.disabled:
        return badge("disabled", "bad")
    if status.last_error:
        return badge("failing", "bad")
    return badge("ok", "ok")


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
    token = console.guard.token
    rows = []
    for i in console.daemon.status().integrations:
        config = settings.integrations.get(i.name)
        destination = _destination(config)
        actions = button(f"/integrations/{part(i.name)}/test", "send a test", token)
        if i.disabled:
            actions += " " + button(f"/integrations/{part(i.name)}/enable", "enable", token)
        rows.append(
            f'<tr id="{escape(i.name)}"><td><b>{escape(i.name)}</b></td><td>{escape(i.kind)}</td>'
            f"<td><code>{escape(settings.redactor(destination))}</code></td>"
            f"<td>{health(i)}</td><td>{escape(i.rate or 'unlimited')}</td>"
            f"<td class=n>{i.in_flight}</td><td class=n>{i.sent}</td>"
            f"<td>{escape(i.disabled or i.last_error or '–')}</td><td>{actions}</td></tr>")
    payload_form = (
        '<h2>Test with a payload</h2><form method="post" action="/integrations/test">'
        f'<input type="hidden" name="csrf" value="{escape(token)}">'
        '<p><label>integration <select name="integration">'
        + "".join(f"<option>{escape(name)}</option>" for name in settings.integrations)
        + '</select></label></p><p><textarea name="payload" rows="4" cols="80" '
        'placeholder=\'{"text": "hello from runhook"}  (empty: the standard test)\'>'
        '</textarea></p><button type="submit">send</button></form>')
    body = (table(["name", "kind", "destination", "health", "rate", "#in flight", "#sent",
                   "last error", ""], rows, "none configured")
            + '<p class="meta">Sent and in flight count since the daemon started; the last '
            "error is cleared by the next successful delivery.</p>"
            + (payload_form if settings.integrations else ""))
    return html(page("Integrations", "/integrations", body, console.flash(request)))
