"""W&B's spellings of automation fields and values, read as runhook's canonical ones
(docs/wandb.md): a W&B user pastes `RUN_METRIC`, `AVERAGE`, `$gt` or `change_dir` and gets
what runhook calls RUN_METRIC_THRESHOLD, avg, > and direction."""

from __future__ import annotations

import difflib
from typing import Any

from msgspec import inspect

from runhook.triggers.artifact import ArtifactTriggers
from runhook.triggers.runs import RunTriggers

# W&B's stored event types (its EventType values) and older names, as runhook's kinds.
KIND_ALIASES = {
    "LINK_MODEL": "LINK_ARTIFACT",
    "RUN_METRIC": "RUN_METRIC_THRESHOLD",
    "UPDATE_ARTIFACT_ALIAS": "ADD_ARTIFACT_ALIAS",
}
# Field names of W&B's metric filters (MetricChangeFilter, MetricZScoreFilter).
FIELD_ALIASES = {
    "name": "metric",
    "change_type": "change",
    "change_dir": "direction",
    "change_amount": "amount",
}
# Values W&B writes short (its ChangeType and ChangeDir enums; its Agg's AVERAGE is
# one of runhook's own, lower-cased) and its MongoDB comparison operators.
VALUE_ALIASES = {
    "change": {"abs": "absolute", "rel": "relative"},
    "direction": {"inc": "increase", "dec": "decrease"},
    "cmp": {"$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<=", "$eq": "==", "$ne": "!="},
}
# Enum fields whose values are lower case in runhook: any case is accepted.
LOWER_CASE = frozenset({"agg", "change", "direction", "goal"})

_UNION = inspect.type_info(ArtifactTriggers | RunTriggers)
assert isinstance(_UNION, inspect.UnionType)
# Each kind's field names: an alias is read only where its canonical field exists.
_KINDS = {str(t.tag): {f.encode_name for f in t.fields}
          for t in _UNION.types if isinstance(t, inspect.StructType)}


def canonical_kind(given: str) -> str:
    """An event kind as runhook names it: any case, W&B's stored values accepted."""
    upper = given.upper()
    return KIND_ALIASES.get(upper, upper)


def alias_of(given: str) -> str | None:
    """The canonical kind a near-miss of a W&B alias meant (`RUN_METRICS` is W&B's
    RUN_METRIC, not RUN_METRIC_ZSCORE), for did-you-mean."""
    match = difflib.get_close_matches(given.upper(), list(KIND_ALIASES), n=1, cutoff=0.8)
    return KIND_ALIASES[match[0]] if match else None


def canonical(raw: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """`raw` (a decoded TOML document) with every automation's event spelt as runhook
    spells it, and the problems aliases cause (a field given under both names)."""
    automations = raw.get("automations")
    if not isinstance(automations, list):
        return raw, []
    problems: list[str] = []
    out = []
    for index, automation in enumerate(automations):
        if isinstance(automation, dict):
            automation = dict(automation)
            event = automation.get("event")
            if isinstance(event, dict):
                found: list[str] = []
                automation["event"] = _event(event, f"automations[{index}].event", found)
                name = automation.get("name")
                problems.extend(f"{p} (automation {name!r})" if isinstance(name, str) else p
                                for p in found)
            action = automation.get("action")
            if isinstance(action, dict) and isinstance(action.get("severity"), str):
                automation["action"] = {**action, "severity": action["severity"].upper()}
        out.append(automation)
    return {**raw, "automations": out}, problems


def _event(event: dict[str, Any], where: str, problems: list[str]) -> dict[str, Any]:
    event = dict(event)
    kind = event.get("kind")
    if isinstance(kind, str):
        kind = event["kind"] = canonical_kind(kind)
    fields = _KINDS.get(kind, set()) if isinstance(kind, str) else set()
    for alias, name in FIELD_ALIASES.items():
        if alias in event and name in fields and alias not in fields:
            if name in event:
                problems.append(f"{where}.{alias}: W&B's name for `{name}`, which is given "
                                "too; give one")
                del event[alias]
                continue
            event[name] = event.pop(alias)
    for field, value in list(event.items()):
        if field in LOWER_CASE or field == "cmp":
            event[field] = _value(field, value)
    states = event.get("states")
    if isinstance(states, list):
        event["states"] = [s.lower() if isinstance(s, str) else s for s in states]
    return event


def _value(field: str, value: Any) -> Any:
    if not isinstance(value, str):
        return value
    lowered = value.strip().lower() if field in LOWER_CASE else value.strip()
    return VALUE_ALIASES.get(field, {}).get(lowered, lowered)
