"""Load-time checks of the message channels besides Slack (Teams, Discord, email,
PagerDuty): every problem names its path, and none quotes a secret's value."""

from __future__ import annotations

import os
from collections.abc import Callable
from email.utils import parseaddr

from runhook.config import model as cfg
from runhook.config.destinations import host_problem, url_problem

ChannelIntegration = (cfg.TeamsIntegration | cfg.DiscordIntegration | cfg.EmailIntegration
                      | cfg.PagerDutyIntegration)
SecretRef = Callable[[str, str | None], None]


def check(where: str, integration: ChannelIntegration, secrets: dict[str, str],
          secret_ref: SecretRef) -> list[str]:
    """Problems of one integration; `secret_ref(field, name)` reports an undeclared secret."""
    problems: list[str] = []
    match integration:
        case cfg.TeamsIntegration() | cfg.DiscordIntegration():
            secret_ref("url_secret", integration.url_secret)
            problem = _secret_url(integration, secrets)
            if problem:
                problems.append(f"{where}.url_secret: {problem}")
        case cfg.PagerDutyIntegration():
            secret_ref("routing_key", integration.routing_key)
            problem = url_problem(integration.url, integration.allow_http,
                                  integration.allow_private)
            if problem:
                problems.append(f"{where}.url: {problem}")
        case cfg.EmailIntegration():
            problems += _email(where, integration, secret_ref)
    return problems


def _secret_url(integration: cfg.TeamsIntegration | cfg.DiscordIntegration,
                secrets: dict[str, str]) -> str | None:
    value = secrets.get(integration.url_secret)
    if value is None:
        return None  # undeclared or unresolved: reported on its own
    # The value is a secret: the problem names neither it nor its host.
    problem = url_problem(value, integration.allow_http, integration.allow_private, secret=True)
    return f"secret {integration.url_secret!r}: {problem}" if problem else None


def _email(where: str, integration: cfg.EmailIntegration, secret_ref: SecretRef) -> list[str]:
    problems: list[str] = []
    problem = host_problem(integration.host.lower(), integration.allow_private)
    if problem:
        problems.append(f"{where}.host: {problem}")
    secret_ref("password", integration.password)
    if (integration.username is None) != (integration.password is None):
        problems.append(f"{where}: give both username and password (SMTP AUTH), or neither")
    for field, address in [("from", integration.sender),
                           *((f"to[{i}]", a) for i, a in enumerate(integration.to))]:
        problem = address_problem(address)
        if problem:
            problems.append(f"{where}.{field}: {problem}")
    if integration.ca_file is not None and not os.access(integration.ca_file, os.R_OK):
        problems.append(f"{where}.ca_file: cannot read {integration.ca_file}")
    return problems


def address_problem(address: str) -> str | None:
    """Why `address` is not one mailbox ("ML alerts <ml@example.com>" or a bare one)."""
    if "\r" in address or "\n" in address:
        return "a line break in an address"  # it would start a new mail header
    local, at, domain = parseaddr(address)[1].rpartition("@")
    if not at or not local or "." not in domain or "," in address:
        return f"{address!r} is not one mail address (like ml@example.com)"
    return None
