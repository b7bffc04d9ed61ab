"""The webhook request: body rendered from the template, bearer token, signatures (pure)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from runhook import __version__
from runhook.config.model import WebhookIntegration
from runhook.config.secrets import signing_key
from runhook.core.templates import Payload, envelope
from runhook.core.variables import ACCESS_TOKEN
from runhook.delivery.signing import standard_signature, wandb_signature

USER_AGENT = f"runhook/{__version__}"


class Request(NamedTuple):
    url: str
    headers: dict[str, str]
    body: bytes


def signing_names(integration: WebhookIntegration) -> list[str]:
    signing = integration.signing_secret
    return [signing] if isinstance(signing, str) else list(signing or [])


def build(integration: WebhookIntegration, payload: Payload | None, context: Mapping[str, Any],
          secrets: Mapping[str, str], execution_id: str, timestamp: int) -> Request:
    """Secrets are read here, at send time, and exist only in the returned request."""
    allowed = {name: secrets[name] for name in integration.secrets}
    if integration.access_token is not None:  # W&B's ${ACCESS_TOKEN}, only in what is sent
        allowed[ACCESS_TOKEN] = secrets[integration.access_token]
    body = payload.render(context, allowed) if payload is not None else envelope(context)
    headers = {"User-Agent": USER_AGENT, **integration.headers,
               "Content-Type": "application/json",
               # Standard Webhooks: the id is the execution id, stable across retries.
               "webhook-id": execution_id, "webhook-timestamp": str(timestamp)}
    if integration.access_token is not None:
        headers["Authorization"] = f"Bearer {secrets[integration.access_token]}"
    keys = [signing_key(secrets[name]) for name in signing_names(integration)]
    if keys:
        headers["webhook-signature"] = standard_signature(keys, execution_id, timestamp, body)
        if integration.signature == "wandb":
            headers["X-Wandb-Signature"] = wandb_signature(keys[0], body)
    return Request(integration.url, headers, body)
