"""The three shapes W&B writes an automation in, read into one `Definition`: the SDK's
`NewAutomation` dump (snake_case), a saved `Automation` (camelCase, as the API returns
it) and the GraphQL create input (`CreateFilterTriggerInput`). Filters and payloads
that are JSON strings inside JSON are decoded."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any, NamedTuple


class Scope(NamedTuple):
    """Where W&B's automation listens: `kind` is project, registry, collection, entity or
    org; a GraphQL input carries only the id, the mapping file names it."""

    kind: str
    id: str
    name: str


class Definition(NamedTuple):
    name: str
    description: str
    enabled: bool
    event_type: str  # W&B's stored value: RUN_METRIC, LINK_MODEL, ADD_ARTIFACT_ALIAS, ...
    event_filter: Any  # decoded JSON
    scope: Scope
    action_type: str  # NOTIFICATION, GENERIC_WEBHOOK, NO_OP, ARIA, QUEUE_JOB, ...
    action: dict[str, Any]  # integration_id, title, message, severity, request_payload, ...


class ShapeError(ValueError):
    """A record that is none of the three shapes, or lacks what its shape must carry."""


REGISTRY_PREFIX = "wandb-registry-"  # a registry is a project named so, server-side

_ACTION_KEYS = {  # the GraphQL input nests the action under its kind's key
    "notification_action_input": "NOTIFICATION", "generic_webhook_action_input":
    "GENERIC_WEBHOOK", "no_op_action_input": "NO_OP", "aria_action_input": "ARIA",
    "queue_job_action_input": "QUEUE_JOB", "push_notification_action_input":
    "PUSH_NOTIFICATION",
}
_TYPENAMES = {  # a saved action's __typename, when actionType was not dumped
    "NotificationTriggeredAction": "NOTIFICATION", "GenericWebhookTriggeredAction":
    "GENERIC_WEBHOOK", "NoOpTriggeredAction": "NO_OP", "ARIATriggeredAction": "ARIA",
    "QueueJobTriggeredAction": "QUEUE_JOB", "PushNotificationTriggeredAction":
    "PUSH_NOTIFICATION",
}


def snake(key: str) -> str:
    """camelCase to snake_case, with W&B's `ID` suffix (`scopeID`, `integrationID`)."""
    key = key.replace("ID", "Id")
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in key).lstrip("_")


def _fields(record: Any) -> dict[str, Any]:
    """A structural level's keys in snake_case (filters keep their own keys)."""
    if not isinstance(record, Mapping):
        raise ShapeError(f"expected an object, got {type(record).__name__}")
    return {snake(str(k)) if not str(k).startswith("__") else str(k): v
            for k, v in record.items()}


def decoded(value: Any) -> Any:
    """JSON held as a string, decoded, as often as it was encoded."""
    while isinstance(value, str) and value.strip()[:1] in ("{", "["):
        value = json.loads(value)
    return value


def records(text: str) -> Iterator[Any]:
    """The records of a file: one JSON value (an object, or a list of them) or NDJSON."""
    try:
        whole = json.loads(text)
    except json.JSONDecodeError:
        for number, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ShapeError(f"line {number}: not JSON: {exc.msg}") from None
        return
    yield from whole if isinstance(whole, list) else [whole]


def read(record: Any) -> Definition:
    fields = _fields(record)
    if "triggering_event_type" in fields:
        return _from_input(fields)
    if isinstance(fields.get("event"), Mapping):
        return _from_model(fields)
    raise ShapeError("not a W&B automation: expected `event` (an SDK or API dump) or "
                     "`triggeringEventType` (a GraphQL create input)")


def _from_input(fields: dict[str, Any]) -> Definition:
    config = _fields(decoded(fields.get("triggered_action_config") or {}))
    present = [(k, v) for k, v in config.items() if k in _ACTION_KEYS and v is not None]
    if not present:
        raise ShapeError("triggeredActionConfig names no action")
    key, action = present[0]
    scope_kind = {"PROJECT": "project", "ARTIFACT_COLLECTION": "collection",
                  "ENTITY": "entity"}.get(str(fields.get("scope_type")), "unknown")
    return Definition(
        name=str(fields.get("name") or ""), description=str(fields.get("description") or ""),
        enabled=fields.get("enabled") is not False,
        event_type=str(fields["triggering_event_type"]),
        event_filter=decoded(fields.get("event_filter")),
        scope=Scope(scope_kind, str(fields.get("scope_id") or ""), ""),
        action_type=str(fields.get("triggered_action_type") or _ACTION_KEYS[key]),
        action=_fields(decoded(action)))


def _from_model(fields: dict[str, Any]) -> Definition:
    event = _fields(fields["event"])
    scope = fields.get("scope") or event.get("scope")
    action = _fields(fields.get("action") or {})
    action_type = action.get("action_type") or _TYPENAMES.get(str(action.get("__typename")))
    if action_type is None:
        raise ShapeError("the action has no actionType")
    integration = action.get("integration")
    if isinstance(integration, Mapping):  # a saved action names its integration inside
        inner = _fields(integration)
        action.setdefault("integration_id", inner.get("id"))
        action["integration"] = inner
    event_filter = decoded(event.get("filter"))
    if isinstance(event_filter, Mapping) and set(event_filter) == {"filter"}:
        event_filter = decoded(event_filter["filter"])  # a saved mutation filter's wrapping
    return Definition(
        name=str(fields.get("name") or ""), description=str(fields.get("description") or ""),
        enabled=fields.get("enabled") is not False, event_type=str(event.get("event_type")),
        event_filter=event_filter, scope=_scope(scope), action_type=str(action_type),
        action=action)


def _scope(scope: Any) -> Scope:
    if not isinstance(scope, Mapping):
        raise ShapeError("the automation has no scope")
    s = _fields(scope)
    typename, name, ident = str(s.get("__typename", "")), str(s.get("name", "")), \
        str(s.get("id", ""))
    if typename == "Project" or s.get("scope_type") == "PROJECT":
        registry = s.get("is_registry") is True or name.startswith(REGISTRY_PREFIX)
        return Scope("registry" if registry else "project", ident, name)
    if typename in ("ArtifactPortfolio", "ArtifactSequence") \
            or s.get("scope_type") == "ARTIFACT_COLLECTION":
        return Scope("collection", ident, name)
    if typename == "Entity" or s.get("scope_type") == "ENTITY":
        return Scope("org" if s.get("entity_type") == "organization" else "entity", ident, name)
    return Scope("unknown", ident, name)
