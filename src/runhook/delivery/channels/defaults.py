"""The title and text of a message whose action gave none: what happened, as W&B's own
notification says it (the run or artifact version, the condition and the values seen,
who, where), derived from the execution's variables (pure)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# An artifact kind in words; `{alias}`/`{tag}` are filled from the firing.
ARTIFACT_WORDS = {
    "CREATE_ARTIFACT": "New artifact version",
    "LINK_ARTIFACT": "Artifact version linked",
    "UNLINK_ARTIFACT": "Artifact version unlinked",
    "ADD_ARTIFACT_ALIAS": "Alias {alias} added",
    "ADD_ARTIFACT_TAG": "Tag {tag} added",
    "REMOVE_ARTIFACT_TAG": "Tag {tag} removed",
}


def _values(context: Mapping[str, Any]) -> str:
    values = context.get("metric_values")
    if not isinstance(values, list | tuple):
        return ""
    return ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values)


def _run(context: Mapping[str, Any]) -> str:
    return str(context.get("run_name") or context.get("run_id") or "")


def title(context: Mapping[str, Any]) -> str:
    kind = str(context.get("event_type", ""))
    if kind in ARTIFACT_WORDS:
        words = ARTIFACT_WORDS[kind].format(alias=context.get("alias", ""),
                                            tag=context.get("tag", ""))
        return f"{words}: {context.get('artifact_version_string', '')}"
    if kind == "RUN_STATE":
        return f"Run {_run(context)} {context.get('run_status', '')}"
    if kind == "GROUP_FINISHED":
        return f"Group {context.get('group', '')} finished"
    if context.get("run_id") and context.get("metric_filter"):
        return f"Run {_run(context)}: {context['metric_filter']}"
    return f"{context.get('automation_name', 'runhook')}: {kind}"


def text(context: Mapping[str, Any], place: str) -> str:
    """One fact a line: the subject and its link, the condition and what was seen, who,
    where and which automation."""
    lines: list[str] = []
    if context.get("run_id"):
        url = context.get("run_url")
        lines.append(f"Run: {_run(context)}" + (f" ({url})" if url else ""))
    if context.get("artifact_version"):
        lines.append(f"Artifact: {context['artifact_version']}")
    if context.get("metric_filter"):
        lines.append(f"Condition: {context['metric_filter']}")
    if _values(context):
        lines.append(f"Values seen: {_values(context)}")
    if context.get("group_runs") is not None:
        lines.append(f"Runs: {context['group_runs']} ({context.get('group_finished', 0)} "
                     f"finished, {context.get('group_failed', 0)} failed)")
        if context.get("group_best_run"):
            lines.append(f"Best: {context['group_best_run']} "
                         f"({context.get('group_best_value', '')})")
    if context.get("event_author"):
        lines.append(f"{'User' if context.get('run_id') else 'By'}: {context['event_author']}")
    if place:
        lines.append(f"Scope: {place}")
    lines.append(f"Automation: {context.get('automation_name', '')}")
    return "\n".join(lines)
