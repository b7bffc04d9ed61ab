"""What `runhook test` sends, recorded so that its execution, redelivered, sends the
same: its context, its message, and why one cannot be sent again (pure)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from runhook.config.automations import readable_secrets, unknown_problem
from runhook.config.model import Integration, WebhookIntegration
from runhook.core.executions import test_context
from runhook.core.templates import Payload, TemplateError, Text

# The payload as given, kept in the execution's context so a redelivery sends what
# the test sent. It is a template: a secret in it is a ${NAME}, rendered at send time.
PAYLOAD = "test_payload"
# Set when the payload held a secret's value: the database never holds one, so the
# payload is kept redacted, for people to read, and cannot be sent again.
WITHHELD = "test_payload_withheld"
SLACK_TITLE = "runhook test"
SLACK_TEXT = "A test message from runhook."


class Unsendable(ValueError):
    """A test execution that cannot be sent again as it was; the message says why."""


@dataclass(frozen=True, slots=True)
class ProbeMessage:
    """A test's message, in the shape of an automation's action (requests.Message)."""

    payload: Payload | None
    title: Text | None
    text: Text | None
    severity: str = "INFO"


def kind(integration: Integration) -> str:
    """The executions row's `action_kind` for this integration."""
    return str(integration.__struct_config__.tag)


def context(integration: str, execution_id: str, now: float, payload: str | None,
            redact: Callable[[str], str]) -> dict[str, Any]:
    """The template context a test execution records, payload included."""
    recorded = test_context(integration, execution_id, now)
    kept = redact(payload) if payload is not None else None
    recorded[PAYLOAD] = kept
    if kept != payload:
        recorded[WITHHELD] = True
    return recorded


def message(integration: Integration, payload: str | None, name: str = "") -> ProbeMessage:
    """`runhook test`'s rule: a webhook sends `payload` as its JSON template, or the
    standard envelope without one; a message channel (Slack, Teams, Discord, email,
    PagerDuty) sends it as the text of a message titled "runhook test". Raises
    TemplateError for a payload that does not compile, or that names a variable
    check-config would refuse in an automation's (a secret `name` does not list would
    go out empty)."""
    if isinstance(integration, WebhookIntegration):
        probe = ProbeMessage(Payload(payload) if payload is not None else None, None, None)
    else:
        probe = ProbeMessage(None, Text(SLACK_TITLE), Text(payload or SLACK_TEXT))
    template = probe.payload or probe.text
    problem = unknown_problem(template.variables, readable_secrets(integration),
                              name) if template is not None else None
    if problem:
        raise TemplateError(problem)
    return probe


def unsendable(context: Mapping[str, Any], action_kind: str | None = None,
               integration: Integration | None = None) -> str | None:
    """Why a recorded test execution cannot be sent again as it was, or None. With
    `integration`, also whether it is still of the kind that was tested."""
    if integration is not None and action_kind is not None and kind(integration) != action_kind:
        name = context.get("integration", "")
        return (f"it tested a {action_kind} integration and {name!r} is now a "
                f"{kind(integration)} one; run `runhook test {name}` again")
    if context.get(WITHHELD):
        return ("its payload held a secret's value, which runhook never stores; refer to "
                "secrets as ${NAME} in a test payload, or run `runhook test` again")
    if PAYLOAD not in context:
        return "it was recorded before runhook kept test payloads; run `runhook test` again"
    return None


def recorded(integration: Integration, context: Mapping[str, Any]) -> ProbeMessage:
    """The message a redelivered test execution sends: `message` of its recorded
    payload. Raises Unsendable (or TemplateError) when it cannot be the same one."""
    problem = unsendable(context)
    if problem is not None:
        raise Unsendable(problem)
    return message(integration, context[PAYLOAD], str(context.get("integration", "")))
