"""What every message channel shares (pure): the rendered title and text, where the
event happened, and cutting text to a vendor's limit."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from runhook.core.templates import Text
from runhook.delivery.channels import defaults

# The severities an action may name; each channel maps them to its own words or colours.
SEVERITIES = ("INFO", "WARN", "ERROR")


class Rendered(NamedTuple):
    title: str
    text: str


def cut(text: str, limit: int) -> str:
    """`text` in at most `limit` characters, an ellipsis marking a cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


# A digest's message lists this many of its firings, then "and N more": enough to
# see who is affected, short enough for every vendor's text limit.
DIGEST_LISTED = 20


def render(title: Text | None, text: Text | None, context: Mapping[str, Any]) -> Rendered:
    """The action's title and text rendered at send time. Without them, a firing says
    what happened (channels.defaults); a digest is titled by its automation, event
    kind and count, and its text ends with the list of its firings."""
    count = context.get("digest_count")
    if title is not None:
        rendered_title = title.render(context, {})
    elif count is not None:
        rendered_title = f"{context.get('automation_name', 'runhook')}: " \
                         f"{context.get('event_type', '')} ×{count}"
    else:
        rendered_title = defaults.title(context)
    rendered_text = text.render(context, {}) if text is not None else \
        defaults.text(context, place(context)) if count is None else ""
    if count is not None:
        rendered_text = "\n\n".join(p for p in (rendered_text, digest_list(context)) if p)
    return Rendered(rendered_title, rendered_text)


def item_line(item: Mapping[str, Any]) -> str:
    """One firing of a digest in a few words: what it is about, then what it saw."""
    subject = item.get("run_name") or item.get("artifact_version_string") \
        or item.get("group") or item.get("run_id") or item.get("execution_id", "")
    if item.get("metric_name") is not None:
        values = ", ".join(f"{v:g}" if isinstance(v, float) else str(v)
                           for v in item.get("metric_values") or ())
        detail = f"{item['metric_name']} [{values}]"
    elif item.get("run_status"):
        detail = str(item["run_status"])
    else:
        detail = str(item.get("event_type", ""))
    return f"• {subject}: {detail}" if detail else f"• {subject}"


def digest_list(context: Mapping[str, Any]) -> str:
    """The first DIGEST_LISTED firings of a digest, one line each, then "and N more"."""
    items = context.get("digest_items") or []
    count = int(context.get("digest_count") or len(items))
    lines = [item_line(item) for item in items[:DIGEST_LISTED] if isinstance(item, dict)]
    if count > len(lines):
        lines.append(f"and {count - len(lines)} more")
    return "\n".join(lines)


def place(context: Mapping[str, Any]) -> str:
    """Where it happened: "entity/project" or "entity/registry"."""
    where = context.get("project_name") or context.get("registry_name") or ""
    return f"{context.get('entity_name', '')}/{where}".strip("/")


def context_line(context: Mapping[str, Any], bold: str = "*") -> str:
    """"automation *NAME* · entity/project · EVENT_KIND", `bold` being the channel's
    markup for bold (Slack's `*`, Markdown's `**`)."""
    name = f"automation {bold}{context.get('automation_name', '')}{bold}"
    return " · ".join(part for part in (name, place(context), context.get("event_type", ""))
                      if part)


def fit(encode: Callable[[str, str], bytes], rendered: Rendered, limit: int) -> bytes:
    """`encode(title, text)` in at most `limit` bytes: the text is cut first, then the
    title (a vendor refuses a message over its size; a shorter one still alerts)."""
    title, text = rendered
    body = encode(title, text)
    for _ in range(8):  # each round cuts by the overshoot; escapes may need another
        over = len(body) - limit
        if over <= 0:
            return body
        if text:
            text = cut(text, max(len(text) - over, 1)) if len(text) > 1 else ""
        else:
            title = cut(title, max(len(title) - over, 1))
        body = encode(title, text)
    return body
