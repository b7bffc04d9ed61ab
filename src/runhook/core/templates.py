"""`${var}` rendering into JSON payloads and plain text, with W&B's variable names."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

import msgspec

from runhook.core.variables import NAMES

# W&B's variable names, so payloads written for W&B automations port unchanged; the
# table of them, with the kinds that set each, is core.variables.
KNOWN_VARIABLES = NAMES
METADATA_PREFIX = "artifact_metadata."
CONFIG_PREFIX = "run_config."
# Variables that open a map: `${artifact_metadata.KEY}`, `${run_config.KEY}`.
MAP_PREFIXES = {METADATA_PREFIX: "artifact_metadata", CONFIG_PREFIX: "run_config"}

_PLACEHOLDER = re.compile(r"\$\$|\$\{([^}]*)\}")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[^\s{}$]+)?$")
_encoder = msgspec.json.Encoder()


class TemplateError(ValueError):
    """A template that cannot be compiled; the message says what and where."""


class Text:
    """A string with placeholders, compiled once: literal parts and variable names alternate."""

    __slots__ = ("parts", "variables")

    def __init__(self, source: str) -> None:
        parts: list[str | _Var] = []
        variables: set[str] = set()
        pos = 0
        for match in _PLACEHOLDER.finditer(source):
            parts.append(source[pos:match.start()])
            pos = match.end()
            if match.group(0) == "$$":
                parts.append("$")
                continue
            name = match.group(1).strip()
            if not _NAME.match(name):
                raise TemplateError(f"bad placeholder ${{{match.group(1)}}}")
            parts.append(_Var(name))
            variables.add(name)
        parts.append(source[pos:])
        self.parts = [p for p in parts if p != ""]
        self.variables = frozenset(variables)

    @property
    def whole_variable(self) -> str | None:
        """The name when the string is exactly one placeholder (it then keeps its type)."""
        if len(self.parts) == 1 and isinstance(self.parts[0], _Var):
            return self.parts[0].name
        return None

    def render(self, context: Mapping[str, Any], secrets: Mapping[str, str]) -> str:
        out: list[str] = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
            else:
                out.append(as_text(lookup(part.name, context, secrets)))
        return "".join(out)


class _Var:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name


def lookup(name: str, context: Mapping[str, Any], secrets: Mapping[str, str]) -> Any:
    """A variable's value; a known variable that does not apply to the event is ""."""
    if name in secrets:
        return secrets[name]
    for prefix, key in MAP_PREFIXES.items():
        if name.startswith(prefix):
            value = (context.get(key) or {}).get(name[len(prefix):])
            return "" if value is None else value
    value = context.get(name)
    return "" if value is None else value


def as_text(value: Any) -> str:
    """How a value reads inside a longer string: strings as they are, numbers for
    people (6 significant digits: 0.30000000000000004 reads 0.3), a list of numbers
    as [0.3, 12.5], the rest as JSON. A placeholder that is a whole string keeps
    the exact typed value (see Payload)."""
    if isinstance(value, str):
        return value
    if _is_number(value):
        return _number(value)
    if isinstance(value, list) and all(_is_number(v) for v in value):
        return "[" + ", ".join(_number(v) for v in value) + "]"
    return _encoder.encode(value).decode()


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _number(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    return f"{value:.6g}" if math.isfinite(value) else ("inf" if value > 0 else "-inf")


class Payload:
    """A JSON payload template: placeholders are substituted inside string values,
    so the result is valid JSON whatever the values hold. Object keys are fixed."""

    __slots__ = ("tree", "variables")

    def __init__(self, source: str) -> None:
        try:
            document = msgspec.json.decode(source.encode())
        except msgspec.DecodeError as exc:
            raise TemplateError(
                f"payload is not valid JSON ({exc}); placeholders go inside JSON strings, "
                'e.g. "${run_name}"') from None
        variables: set[str] = set()
        self.tree = _compile(document, variables, "$")
        self.variables = frozenset(variables)

    def render(self, context: Mapping[str, Any], secrets: Mapping[str, str]) -> bytes:
        return _encoder.encode(_render(self.tree, context, secrets))


def _compile(node: Any, variables: set[str], where: str) -> Any:
    if isinstance(node, str):
        text = Text(node)
        variables.update(text.variables)
        return text if text.variables or "$" in node else node
    if isinstance(node, list):
        return [_compile(item, variables, f"{where}[{i}]") for i, item in enumerate(node)]
    if isinstance(node, dict):
        return _Object([(_key(key, where), _compile(value, variables, _member(where, key)))
                        for key, value in node.items()])
    return node


def _key(source: str, where: str) -> str:
    """An object key as sent. A placeholder in it is refused: a rendered key could
    collide with a fixed one ({"${event_author}": …, "approved_by": …} from an
    author named approved_by), and the receiver would read the event's value."""
    key = Text(source)
    if key.variables:
        names = ", ".join("${" + name + "}" for name in sorted(key.variables))
        raise TemplateError(f"placeholder in an object key at {where}: keys are fixed, so no "
                            f"rendered value can overwrite another key; put {names} in a value")
    return key.render({}, {})  # only `$$` escapes left: each becomes "$"


def _member(where: str, key: str) -> str:
    return f"{where}.{key}" if key.isidentifier() else f"{where}[{_encoder.encode(key).decode()}]"


class _Object:
    __slots__ = ("items",)

    def __init__(self, items: list[tuple[str, Any]]) -> None:
        self.items = items


def _render(node: Any, context: Mapping[str, Any], secrets: Mapping[str, str]) -> Any:
    if isinstance(node, Text):
        whole = node.whole_variable
        if whole is not None:
            return lookup(whole, context, secrets)
        return node.render(context, secrets)
    if isinstance(node, _Object):
        return {key: _render(value, context, secrets) for key, value in node.items}
    if isinstance(node, list):
        return [_render(item, context, secrets) for item in node]
    return node


def envelope(context: Mapping[str, Any]) -> bytes:
    """The body a webhook sends when its action has no payload: every variable that applies."""
    data = {k: v for k, v in context.items() if v not in (None, "", {}, [])}
    return _encoder.encode({
        "type": context.get("event_type", ""),
        "timestamp": context.get("event_time", ""),
        "data": data,
    })


def unknown_variables(variables: frozenset[str], allowed_secrets: frozenset[str]) -> list[str]:
    """The names a template uses that are neither W&B variables nor secrets it may read."""
    return sorted(
        name for name in variables
        if name not in KNOWN_VARIABLES and name not in allowed_secrets
        and not any(name.startswith(p) and len(name) > len(p) for p in MAP_PREFIXES))
