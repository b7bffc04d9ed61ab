"""The request an automation or an execution sends, built as at send time and shown
with every secret masked: `runhook preview`, the console's execution page (pure)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from runhook.config.model import WebhookIntegration
from runhook.config.settings import Automation, Settings
from runhook.core.events import CollectionEvent, Event, RunEvent, RunMetrics, RunState
from runhook.core.executions import (
    artifact_context,
    event_timestamp,
    new_id,
    run_context,
)
from runhook.core.identity import Identity
from runhook.core.templates import Payload, Text, lookup
from runhook.delivery import redelivery, requests, sample
from runhook.delivery.channels import webhook
from runhook.delivery.channels.email import Mail
from runhook.delivery.channels.webhook import signing_names
from runhook.store.rows import Execution
from runhook.triggers.artifact import occurrences

# Headers whose value is computed from a secret: shown by name, never by value (the
# value would let anyone who reads the page forge or replay a delivery).
SIGNATURE_HEADERS = ("webhook-signature", "X-Wandb-Signature")


@dataclass(frozen=True, slots=True)
class Preview:
    method: str
    url: str
    headers: dict[str, str]
    body: str
    warnings: list[str] = field(default_factory=list)

    def text(self) -> str:
        """As it goes on the wire, headers then body."""
        lines = [f"{self.method} {self.url}"] + [f"{k}: {v}" for k, v in self.headers.items()]
        return "\n".join(lines) + "\n\n" + self.body


def masked(request: webhook.Request | Mail, settings: Settings, signing: list[str]) -> Preview:
    """`request` with each secret's value replaced by its name."""
    redact = settings.redactor
    if isinstance(request, Mail):  # no password in it: that is added at send time
        body = request.message.get_body(("plain",))
        return Preview("SMTP", f"smtp://{request.host}:{request.port} ({request.tls})",
                       {name: redact(str(value)) for name, value in request.message.items()},
                       redact(body.get_content() if body is not None else ""))
    headers = {}
    for name, value in request.headers.items():
        if name in SIGNATURE_HEADERS:
            value = (f"[HMAC-SHA256 with secret {', '.join(signing)}, computed at send time]"
                     if signing else "[computed at send time]")
        headers[name] = redact(value)
    return Preview("POST", redact(request.url), headers,
                   redact(request.body.decode("utf-8", "replace")))


def empty_variables(templates: list[Payload | Text | None], context: Mapping[str, Any],
                    secrets: frozenset[str] = frozenset()) -> list[str]:
    """The variables of `templates` that render empty for `context`."""
    names = {name for t in templates if t is not None for name in t.variables} - secrets
    return sorted(n for n in names if lookup(n, context, {}) in ("", None, [], {}))


def for_event(settings: Settings, automation: Automation, event: Event,
              now: float | None = None) -> Preview:
    """What `automation` would send for `event`, as if it fired now. Nothing is sent."""
    now = time.time() if now is None else now
    execution_id = new_id(now)
    context, warnings = _context(settings, automation, event, execution_id, now)
    return _build(settings, automation, context, execution_id, now, warnings)


def for_execution(settings: Settings, execution: Execution,
                  now: float | None = None) -> Preview | str:
    """What `execution` sends on its next attempt, or why it cannot be built."""
    now = time.time() if now is None else now
    why = redelivery.refusal(execution, settings)  # what the next attempt would meet too
    if why is not None:
        return f"it cannot be sent as it is: {why}"
    assert execution.integration is not None
    integration = settings.integrations[execution.integration]
    automation = settings.automation(execution.automation)
    if automation is not None:
        return _build(settings, automation, execution.context, execution.id, now, [])
    try:  # a `runhook test` execution: the payload it recorded
        request = requests.for_execution(integration, None, execution.context,
                                         settings.secrets, execution.id, int(now))
    except (sample.Unsendable, ValueError, KeyError) as exc:
        return f"cannot build the request: {exc}"
    return masked(request, settings, _signing(integration))


def _build(settings: Settings, automation: Automation, context: Mapping[str, Any],
           execution_id: str, now: float, warnings: list[str]) -> Preview:
    action = automation.action
    if action.integration is None:
        return Preview("NONE", "(kind = \"none\": recorded, nothing is sent)", {}, "",
                       warnings)
    integration = settings.integrations[action.integration]
    request = requests.build(integration, action, context, settings.secrets, execution_id,
                             int(now))
    allowed = frozenset(integration.secrets) if isinstance(integration, WebhookIntegration) \
        else frozenset()
    empty = empty_variables([action.payload, action.title, action.text], context, allowed)
    if empty:
        warnings = [*warnings, "renders empty: " + ", ".join("${" + n + "}" for n in empty)]
    preview = masked(request, settings, _signing(integration))
    return Preview(preview.method, preview.url, preview.headers, preview.body, warnings)


def _signing(integration: Any) -> list[str]:
    return signing_names(integration) if isinstance(integration, WebhookIntegration) else []


def _context(settings: Settings, automation: Automation, event: Event, execution_id: str,
             now: float) -> tuple[dict[str, Any], list[str]]:
    """The template context the automation's firing on `event` records, and what
    the preview cannot promise (a filter that does not match, a run's history).
    Whether it would fire is the evaluator's own answer: the actors the event is
    routed to, and the run filters as they match a run's identity."""
    warnings: list[str] = []
    event_time = event_timestamp(event, now)
    if not settings.evaluates(automation, event):
        warnings.append(f"the event is in {event.location}, the automation watches "
                        f"{automation.scope}: it would not fire")
    if isinstance(event, CollectionEvent):
        checker = automation.artifact
        found = occurrences(event)
        matching = [o for o in found if checker is not None and checker.matches(event, o)]
        if not matching:
            warnings.append(f"the event does not match the automation's {automation.kind} "
                            "filters: it would not fire")
        occurrence = (matching or [o for o in found if o.kind == automation.kind] or found)[0]
        return artifact_context(event, occurrence, automation.name, execution_id,
                                event_time), warnings
    if not isinstance(event, RunEvent) or automation.run is None:
        warnings.append(f"a {event.__struct_config__.tag} event cannot fire a "
                        f"{automation.kind} automation")
        return {"event_type": automation.kind, "automation_name": automation.name,
                "execution_id": execution_id}, warnings
    run_checker = automation.run
    run = Identity(event.run_id)
    run.learn(event)  # what the run book knows of a run from this event alone
    if not run_checker.matcher.matches(*run.key):
        warnings.append(f"the run (run_name {run.name!r}, user {run.user!r}, group "
                        f"{run.group!r}, tags {list(run.tags)}) does not match the "
                        "automation's run filters: it would not fire (an earlier event's "
                        "name, user, group or tags, remembered by the daemon, would count)")
    metric = run_checker.metric.metric if run_checker.metric is not None else None
    values: list[float] = []
    description = run_checker.metric.description if run_checker.metric is not None else (
        run_checker.state.description if run_checker.state is not None else "")
    if metric is not None:
        value = event.values.get(metric) if isinstance(event, RunMetrics) else None
        values = [value] if value is not None else []
        warnings.append("a metric condition reads the run's history: shown as if it held, "
                        f"with {metric} = {values[0] if values else '(not in the event)'}")
    status = event.state if isinstance(event, RunState) else "running"
    return run_context(event, automation.name, automation.kind, execution_id, event_time,
                       status, description, metric, values), warnings
