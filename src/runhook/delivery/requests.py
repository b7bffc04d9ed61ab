"""The request an execution sends, by one rule for an automation's action, `runhook test`
and a redelivered test: the channel renders the message at send time (pure)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from runhook.config.model import (
    DiscordIntegration,
    EmailIntegration,
    Integration,
    PagerDutyIntegration,
    SlackIntegration,
    TeamsIntegration,
    WebhookIntegration,
)
from runhook.core.templates import Payload, Text
from runhook.delivery import sample
from runhook.delivery.channels import discord, email, pagerduty, slack, teams, webhook

# What an attempt sends: an HTTP request, or a mail for SMTP.
Outgoing = webhook.Request | email.Mail


class Message(Protocol):
    """What a request is rendered from: an automation's compiled action, or a test's."""

    @property
    def payload(self) -> Payload | None: ...  # a webhook's body; None: the envelope

    @property
    def title(self) -> Text | None: ...  # a message channel's parts (Slack, Teams, …)

    @property
    def text(self) -> Text | None: ...

    @property
    def severity(self) -> str: ...


def build(integration: Integration, message: Message, context: Mapping[str, Any],
          secrets: Mapping[str, str], execution_id: str, timestamp: int) -> Outgoing:
    """Secrets are read here, at send time, and exist only in the returned request.
    Raises TemplateError, KeyError or ValueError for a message that cannot render."""
    parts = (message.title, message.text, message.severity, context, secrets)
    match integration:
        case WebhookIntegration():
            return webhook.build(integration, message.payload, context, secrets, execution_id,
                                 timestamp)
        case SlackIntegration():
            return slack.build(integration, *parts)
        case TeamsIntegration():
            return teams.build(integration, *parts)
        case DiscordIntegration():
            return discord.build(integration, *parts)
        case PagerDutyIntegration():
            return pagerduty.build(integration, *parts)
        case EmailIntegration():
            return email.build(integration, message.title, message.text, context, secrets)


def for_execution(integration: Integration, action: Message | None,
                  context: Mapping[str, Any], secrets: Mapping[str, str], execution_id: str,
                  timestamp: int) -> Outgoing:
    """An execution's request: its automation's `action`, or with None (a `runhook
    test` execution, redelivered) the payload the test recorded. Raises
    sample.Unsendable for a test that cannot be the same request again."""
    message = action if action is not None else sample.recorded(integration, context)
    return build(integration, message, context, secrets, execution_id, timestamp)
