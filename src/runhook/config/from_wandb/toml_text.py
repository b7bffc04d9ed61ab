"""Imported tables as TOML text: secrets, integrations, then one [[automations]] block
each with inline `event` and `action` tables, as the README writes them (pure)."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

from runhook.config.from_wandb.translate import Imported

_BARE = re.compile(r"^[A-Za-z0-9_-]+$")


def string(text: str) -> str:
    """A TOML basic string. JSON's escapes are TOML's; DEL is the one control character
    JSON leaves raw that TOML refuses, and astral characters stay as they are (a JSON
    surrogate pair is no TOML escape)."""
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def key(name: str) -> str:
    return name if _BARE.match(name) else string(name)


def value(item: Any) -> str:
    if isinstance(item, bool):
        return "true" if item else "false"
    if isinstance(item, int):
        return str(item)
    if isinstance(item, float):
        if math.isnan(item):
            return "nan"
        return ("inf" if item > 0 else "-inf") if math.isinf(item) else repr(item)
    if isinstance(item, str):
        return string(item)
    if isinstance(item, list):
        return "[" + ", ".join(value(v) for v in item) + "]"
    if isinstance(item, Mapping):
        return "{ " + ", ".join(f"{key(k)} = {value(v)}" for k, v in item.items()) + " }"
    raise TypeError(f"no TOML for {type(item).__name__}")


def render(imported: Imported, header: list[str]) -> str:
    lines = [f"# {line}" for line in header]
    if imported.secrets:
        lines += ["", "[secrets]"]
        lines += [f"{key(n)} = {value(s)}" for n, s in imported.secrets.items()]
    for name, table in imported.integrations.items():
        lines += ["", f"[integrations.{key(name)}]"]
        lines += [f"{key(k)} = {value(v)}" for k, v in table.items()]
    for automation in imported.automations:
        lines += ["", "[[automations]]"]
        lines += [f"{key(k)} = {value(v)}" for k, v in automation.items()]
    return "\n".join(lines) + "\n"
