"""A W&B event (its type and decoded filter) as runhook's `event` table (pure)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from runhook.config.from_wandb.filters import Untranslatable, conditions, exact, pattern
from runhook.config.from_wandb.shapes import decoded

# W&B's stored event types (and the SDK's names for them) -> runhook's kinds.
RUN_METRIC_KINDS = {"RUN_METRIC": "RUN_METRIC_THRESHOLD",
                    "RUN_METRIC_THRESHOLD": "RUN_METRIC_THRESHOLD",
                    "RUN_METRIC_CHANGE": "RUN_METRIC_CHANGE",
                    "RUN_METRIC_ZSCORE": "RUN_METRIC_ZSCORE"}
ARTIFACT_KINDS = {
    "CREATE_ARTIFACT": "CREATE_ARTIFACT", "LINK_MODEL": "LINK_ARTIFACT",
    "LINK_ARTIFACT": "LINK_ARTIFACT", "UNLINK_ARTIFACT": "UNLINK_ARTIFACT",
    "ADD_ARTIFACT_ALIAS": "ADD_ARTIFACT_ALIAS",
    # W&B's legacy kind: it fired when an alias was set, which is an alias added.
    "UPDATE_ARTIFACT_ALIAS": "ADD_ARTIFACT_ALIAS",
    "ADD_ARTIFACT_TAG": "ADD_ARTIFACT_TAG", "REMOVE_ARTIFACT_TAG": "REMOVE_ARTIFACT_TAG",
    "ADD_COLLECTION_TAG": "ADD_COLLECTION_TAG", "REMOVE_COLLECTION_TAG": "REMOVE_COLLECTION_TAG",
}
# The artifact filter fields W&B has, and runhook's field for each.
ARTIFACT_FIELDS = {"alias": "alias", "tag": "tag"}
CMP = {"$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<=", ">": ">", ">=": ">=", "<": "<",
       "<=": "<="}
AGG = {"AVERAGE": "avg", "AVG": "avg", "MIN": "min", "MAX": "max"}


def event_table(event_type: str, event_filter: Any) -> dict[str, Any]:
    """runhook's `event = {...}` for a W&B event; Untranslatable says why not."""
    if event_type in ARTIFACT_KINDS:
        return _artifact(ARTIFACT_KINDS[event_type], event_filter)
    if event_type in RUN_METRIC_KINDS or event_type == "RUN_STATE":
        if not isinstance(event_filter, Mapping):
            raise Untranslatable(f"{event_type}: expected a run filter object")
        table = _metric(event_filter) if event_type in RUN_METRIC_KINDS else \
            _state(event_filter)
        table.update(run_filter(decoded(event_filter.get("run_filter"))))
        return table
    raise Untranslatable(f"event type {event_type}: runhook has no such event")


def _artifact(kind: str, event_filter: Any) -> dict[str, Any]:
    table: dict[str, Any] = {"kind": kind}
    for field, condition in conditions(event_filter):
        ours = ARTIFACT_FIELDS.get(field)
        if ours is None:
            raise Untranslatable(f"{field}: not a filter runhook has on artifact events "
                                 "(alias, tag)")
        if ours in table:
            raise Untranslatable(f"{field}: two conditions on one field; runhook takes one")
        table[ours] = pattern(field, condition)
    return table


def run_filter(expression: Any) -> dict[str, Any]:
    """W&B's run filter: `display_name` is runhook's `run_name`, `username` its `user`."""
    table: dict[str, Any] = {}
    for field, condition in conditions(expression):
        if field in ("display_name", "name"):
            key, value = "run_name", pattern("run name", condition)
        elif field in ("username", "user"):
            key, value = "user", exact("user", condition)  # type: ignore[assignment]
        elif field == "group":
            key, value = "group", pattern("group", condition)
        elif field.startswith("config."):
            raise Untranslatable(f"{field}: a config-field run filter; runhook filters runs "
                                 "by name, user, group and tags only")
        else:
            raise Untranslatable(f"{field}: not a run filter runhook has (run name, user, "
                                 "group)")
        if key in table:
            raise Untranslatable(f"{field}: two conditions on one field; runhook takes one")
        table[key] = value
    return table


def _metric(event_filter: Mapping[str, Any]) -> dict[str, Any]:
    chosen = decoded(event_filter.get("run_metric_filter"))
    if isinstance(chosen, Mapping):
        for key, kind in (("threshold_filter", "RUN_METRIC_THRESHOLD"),
                          ("change_filter", "RUN_METRIC_CHANGE"),
                          ("zscore_filter", "RUN_METRIC_ZSCORE")):
            inner = chosen.get(key)
            if isinstance(inner, Mapping):
                return _metric_table(kind, inner)
    legacy = decoded(event_filter.get("metric_filter"))  # the deprecated threshold-only field
    if isinstance(legacy, Mapping):
        return _metric_table("RUN_METRIC_THRESHOLD", legacy)
    raise Untranslatable("a run metric event with no metric condition")


def _metric_table(kind: str, f: Mapping[str, Any]) -> dict[str, Any]:
    table: dict[str, Any] = {"kind": kind, "metric": str(f.get("name", ""))}
    agg = AGG.get(str(f.get("agg_op") or f.get("agg") or "").upper())
    # W&B ignores the window when no aggregate is given: the latest value alone.
    if kind == "RUN_METRIC_THRESHOLD":
        window = int(f.get("window_size") or f.get("window") or 1) if agg else 1
        op = CMP.get(str(f.get("cmp_op") or f.get("cmp")))
        if op is None:
            raise Untranslatable(f"comparison {f.get('cmp_op')!r}: W&B's are $gt $gte $lt $lte")
        table.update(window=window, cmp=op, threshold=_number(f.get("threshold")))
        if agg is not None:
            table["agg"] = agg
    elif kind == "RUN_METRIC_CHANGE":
        current = int(f.get("current_window_size") or f.get("window") or 1) if agg else 1
        prior = int(f.get("prior_window_size") or f.get("prior_window") or current) \
            if agg else 1
        table.update(agg=agg or "avg", window=current, prior_window=prior,
                     change=str(f.get("change_type", "ABSOLUTE")).lower(),
                     direction=str(f.get("change_dir", "ANY")).lower(),
                     amount=_number(f.get("change_amount", f.get("threshold"))))
    else:
        table.update(window=int(f.get("window_size") or f.get("window") or 30),
                     threshold=_number(f.get("threshold", 3.0)),
                     direction=str(f.get("change_dir", "ANY")).lower())
    return table


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Untranslatable(f"threshold {value!r}: expected a number")
    return float(value)


def _state(event_filter: Mapping[str, Any]) -> dict[str, Any]:
    inner = decoded(event_filter.get("run_state_filter"))
    states = inner.get("states") if isinstance(inner, Mapping) else None
    if not isinstance(states, list) or not states:
        raise Untranslatable("RUN_STATE with no states")
    # W&B's CRASHED is FAILED (its SDK aliases them); runhook's `failed` includes crashes.
    ours = sorted({"failed" if str(s).upper() == "CRASHED" else str(s).lower()
                   for s in states})
    return {"kind": "RUN_STATE", "states": ours}
