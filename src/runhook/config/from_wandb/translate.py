"""W&B definitions and a mapping into runhook's configuration tables: each automation
checked as the daemon would load it, or left out with the reason (pure)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec

from runhook.config import model
from runhook.config.automations import compile_automation
from runhook.config.from_wandb.events import event_table
from runhook.config.from_wandb.filters import Untranslatable, literal
from runhook.config.from_wandb.shapes import REGISTRY_PREFIX, Definition
from runhook.core.schema import FieldError
from runhook.core.templates import TemplateError
from runhook.core.variables import NAMES

# W&B's actions runhook has no counterpart for, and why.
UNSUPPORTED_ACTIONS = {
    "ARIA": "an ARIA prompt: runhook sends webhooks and messages, it has no agent",
    "QUEUE_JOB": "a Launch job: runhook does not start jobs (a webhook to your launcher can)",
    "PUSH_NOTIFICATION": "a W&B app push notification: it reaches only W&B's own app",
}
# W&B's notification is a Slack message; a mapped integration may name another channel.
DEFAULT_KIND = {"NOTIFICATION": "slack", "GENERIC_WEBHOOK": "webhook"}
_PLACEHOLDER = re.compile(r"\$\{([^}]*)\}")


@dataclass
class Imported:
    """What an import makes: tables for the TOML file, and what it left out."""

    secrets: dict[str, Any] = field(default_factory=dict)
    integrations: dict[str, dict[str, Any]] = field(default_factory=dict)
    automations: list[dict[str, Any]] = field(default_factory=list)
    left_out: list[tuple[str, str]] = field(default_factory=list)  # (name, reason)


def translate(definitions: Iterable[Definition], mapping: Mapping[str, Any]) -> Imported:
    out = Imported()
    declared = dict(mapping.get("secrets") or {})
    for number, definition in enumerate(definitions, 1):
        name = definition.name or f"wandb-{number}"
        try:
            automation, integration = _automation(definition, name, mapping, declared)
            if any(a["name"] == name for a in out.automations):
                raise Untranslatable("its name is used by an earlier definition")
            integrations = dict(out.integrations)
            if integration is not None:
                integrations[integration[0]] = _merged(integrations.get(integration[0]),
                                                       integration[1])
            _check(automation, integrations)
        except Untranslatable as exc:
            out.left_out.append((name, str(exc)))
            continue
        out.automations.append(automation)
        out.integrations = integrations
    used = {ref for table in out.integrations.values() for ref in _secret_refs(table)}
    out.secrets = {n: declared.get(n, {"env": n}) for n in sorted(used)}
    return out


def _automation(definition: Definition, name: str, mapping: Mapping[str, Any],
                declared: Mapping[str, Any]
                ) -> tuple[dict[str, Any], tuple[str, dict[str, Any]] | None]:
    event = event_table(definition.event_type, definition.event_filter)
    scope, collection = _scope(definition, mapping)
    if collection is not None:
        event["collection"] = f"^{literal(collection)}$"
    action, integration = _action(definition, mapping, declared)
    automation: dict[str, Any] = {"name": name}
    if definition.description:
        automation["description"] = definition.description
    if not definition.enabled:
        automation["enabled"] = False
    automation.update(scope=scope, event=event, action=action)
    return automation, integration


def _scope(definition: Definition, mapping: Mapping[str, Any]) -> tuple[str, str | None]:
    """runhook's scope, and the collection filter a collection scope becomes."""
    scope = definition.scope
    mapped = (mapping.get("scopes") or {}).get(scope.id)
    entity = mapping.get("entity")
    if scope.kind == "collection":
        target = mapped.get("scope") if isinstance(mapped, Mapping) else mapped
        name = mapped.get("collection", scope.name) if isinstance(mapped, Mapping) \
            else scope.name
        if not target or not name:
            raise Untranslatable(f"collection scope {scope.name or scope.id}: runhook has no "
                                 "collection scope; map its id under [scopes] to the project "
                                 "or registry it is in (it becomes a `collection` filter)")
        return str(target), str(name)
    if isinstance(mapped, str):
        return mapped, None
    if scope.kind in ("entity", "org"):
        return f"{scope.kind}:{scope.name}", None
    if scope.kind in ("project", "registry"):
        if not entity:
            raise Untranslatable(f"{scope.kind} {scope.name}: which entity? give `entity` in "
                                 "the --map file")
        where = scope.name.removeprefix(REGISTRY_PREFIX)
        return f"{scope.kind}:{entity}/{where}", None
    raise Untranslatable(f"scope id {scope.id or '?'}: the dump does not say what it is; map "
                         "it under [scopes] (a GraphQL input carries only the id)")


def _action(definition: Definition, mapping: Mapping[str, Any], declared: Mapping[str, Any]
            ) -> tuple[dict[str, Any], tuple[str, dict[str, Any]] | None]:
    kind, action = definition.action_type, definition.action
    if kind in UNSUPPORTED_ACTIONS:
        raise Untranslatable(f"action {kind}, {UNSUPPORTED_ACTIONS[kind]}")
    if kind == "NO_OP":
        return {"kind": "none"}, None
    if kind not in DEFAULT_KIND:
        raise Untranslatable(f"action {kind}: runhook has no such action")
    ident = str(action.get("integration_id") or "")
    table = dict((mapping.get("integrations") or {}).get(ident) or {})
    dumped = action.get("integration") or {}
    name = str(table.pop("name", None) or dumped.get("name") or "")
    if not name:
        raise Untranslatable(f"integration {ident or '?'} is not in the --map file "
                             "([integrations.\"ID\"] with its name, url and secrets)")
    table = {"kind": table.pop("kind", DEFAULT_KIND[kind]), **table}
    if table["kind"] == "webhook" and dumped.get("url_endpoint"):
        table.setdefault("url", dumped["url_endpoint"])
    if kind == "NOTIFICATION":
        out: dict[str, Any] = {"integration": name}
        for ours, theirs in (("title", "title"), ("text", "message")):
            if action.get(theirs):  # W&B's empty title/message: its default message
                out[ours] = str(action[theirs])
        severity = str(action.get("severity") or "INFO").upper()
        if severity != "INFO":
            out["severity"] = severity
        return out, (name, table)
    payload = action.get("request_payload")
    out = {"integration": name}
    if payload is not None:
        text = payload if isinstance(payload, str) else json.dumps(payload)
        text, used = _secret_placeholders(text, table, declared)
        table["secrets"] = sorted(set(table.get("secrets") or ()) | used)
        if not table["secrets"]:
            del table["secrets"]
        out["payload"] = text
    return out, (name, table)


def _secret_placeholders(text: str, table: Mapping[str, Any], declared: Mapping[str, Any]
                         ) -> tuple[str, set[str]]:
    """W&B's `${ACCESS_TOKEN}` becomes the integration's token secret by name, and every
    other placeholder naming a secret is one the integration must list in `secrets`."""
    used: set[str] = set()

    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        if name == "ACCESS_TOKEN" and "ACCESS_TOKEN" not in NAMES:
            token = table.get("access_token")
            if not token:
                raise Untranslatable("the payload uses ${ACCESS_TOKEN}: name the integration's "
                                     "`access_token` secret in the --map file")
            used.add(str(token))
            return "${" + str(token) + "}"
        if name not in NAMES and not name.startswith(("artifact_metadata.", "run_config.")):
            if name not in declared:
                raise Untranslatable(f"the payload uses ${{{name}}}, not a W&B variable: if it "
                                     "is a W&B secret, declare it under [secrets] in the "
                                     "--map file")
            used.add(name)
        return match.group(0)

    return _PLACEHOLDER.sub(one, text), used


def _merged(old: dict[str, Any] | None, new: dict[str, Any]) -> dict[str, Any]:
    if old is None:
        return new
    if old.get("kind") != new.get("kind"):
        raise Untranslatable(f"integration used as both {old.get('kind')} and "
                             f"{new.get('kind')}")
    merged = dict(old)
    if "secrets" in new or "secrets" in old:
        merged["secrets"] = sorted(set(old.get("secrets") or ()) | set(new.get("secrets") or ()))
    return merged


def _secret_refs(table: Mapping[str, Any]) -> list[str]:
    refs = [table.get(k) for k in ("access_token", "url_secret", "token", "password",
                                   "routing_key")]
    signing = table.get("signing_secret")
    refs.extend(signing if isinstance(signing, list) else [signing])
    refs.extend(table.get("secrets") or ())
    return [str(r) for r in refs if r]


def _check(automation: dict[str, Any], integrations: dict[str, dict[str, Any]]) -> None:
    """The automation as the daemon would load it (secrets are not read: they are
    resolved where the daemon runs)."""
    try:
        config = msgspec.convert({"integrations": integrations, "automations": [automation]},
                                 model.Config)
    except msgspec.ValidationError as exc:
        raise Untranslatable(f"not valid in this runhook: {exc}") from None
    try:
        compile_automation(config.automations[0], config)
    except FieldError as exc:
        raise Untranslatable(f"not valid in this runhook: {exc.field}: {exc.message}") from None
    except TemplateError as exc:
        raise Untranslatable(f"not valid in this runhook: {exc}") from None
