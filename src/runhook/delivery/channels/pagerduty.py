"""PagerDuty Events API v2: trigger and resolve events keyed by a dedup_key (pure).

What PagerDuty documents (developer docs, "Send an Alert Event" and the Events API v2
overview), and this module follows:
- POST https://events.pagerduty.com/v2/enqueue, JSON with `routing_key` (the
  integration key), `event_action` (`trigger`, `acknowledge` or `resolve`) and
  `dedup_key` (at most 255 characters) correlating a resolve with its trigger.
- A trigger needs `payload.summary` (at most 1024 characters), `payload.source` and
  `payload.severity` (`critical`, `error`, `warning` or `info`); `timestamp`,
  `component`, `group`, `class` and `custom_details` are optional.
- A resolve needs only `routing_key`, `dedup_key` and `event_action`; one for an alert
  already resolved (or never opened) is dropped, so sending it again is harmless.
- Answers: 202 accepted; 400 invalid (not retried); 429 and 5xx retried. A payload
  is at most 512 KB.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import msgspec

from runhook.config.model import PagerDutyIntegration
from runhook.core.executions import EVENT_ACTION, RESOLVE
from runhook.core.templates import Text
from runhook.delivery.channels.common import DIGEST_LISTED, cut, place, render
from runhook.delivery.channels.webhook import USER_AGENT, Request

SUMMARY_LIMIT = 1024
DEDUP_KEY_LIMIT = 255
SEVERITIES = {"INFO": "info", "WARN": "warning", "ERROR": "error"}


def dedup_key(context: Mapping[str, Any]) -> str:
    """automation + run (run events) or + collection (artifact events), so a run's
    alerts fold into one incident and its resolve finds it. A test has its own.

    A digest is one trigger keyed by automation + its digest key: the storm it
    gathers is one incident, and the next window of the same key (the sweep still
    failing) adds to that incident instead of paging again. Nothing resolves it
    automatically: one run recovering says nothing of the others (the evaluator
    sends no per-run resolve for an automation with a digest)."""
    automation = context.get("automation_name", "")
    if context.get("digest_count") is not None:
        key = f"{automation}/digest/{context.get('digest_key', '')}"
    elif context.get("run_id") is not None:
        key = f"{automation}/{context['run_id']}"
    elif context.get("artifact_version"):
        key = f"{automation}/{str(context['artifact_version']).rsplit(':', 1)[0]}"
    else:
        key = f"{automation}/{context.get('execution_id', '')}"
    if len(key) <= DEDUP_KEY_LIMIT:
        return key
    # Too long (long names): a prefix to read, and a digest of the whole to stay unique.
    digest = hashlib.blake2b(key.encode(), digest_size=16).hexdigest()
    return f"{key[:DEDUP_KEY_LIMIT - len(digest) - 1]}#{digest}"


def event(routing_key: str, title: str, text: str, severity: str,
          context: Mapping[str, Any], source: str | None = None) -> dict[str, Any]:
    key = dedup_key(context)
    if context.get(EVENT_ACTION) == RESOLVE:
        return {"routing_key": routing_key, "event_action": RESOLVE, "dedup_key": key}
    payload: dict[str, Any] = {
        "summary": cut(title, SUMMARY_LIMIT),
        "source": source or place(context) or "runhook",
        "severity": SEVERITIES[severity],
        "component": context.get("automation_name", ""),
        "class": context.get("event_type", ""),
        # The template variables: no secret is ever among them. A digest's items are
        # cut to the listed few (the text has the count): a payload is at most 512 KB.
        "custom_details": {**({"text": text} if text else {}), **context,
                           **({"digest_items": context["digest_items"][:DIGEST_LISTED]}
                              if "digest_items" in context else {})},
    }
    if context.get("event_time"):
        payload["timestamp"] = context["event_time"]
    if context.get("run_name"):
        payload["group"] = context["run_name"]
    return {"routing_key": routing_key, "event_action": "trigger", "dedup_key": key,
            "payload": payload, "client": "runhook"}


def build(integration: PagerDutyIntegration, title: Text | None, text: Text | None,
          severity: str, context: Mapping[str, Any], secrets: Mapping[str, str]) -> Request:
    body = event(secrets[integration.routing_key], *render(title, text, context), severity,
                 context, integration.source)
    headers = {"User-Agent": USER_AGENT, "Content-Type": "application/json"}
    return Request(integration.url, headers, msgspec.json.encode(body))
