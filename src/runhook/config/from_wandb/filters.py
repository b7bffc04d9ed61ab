"""MongoDB-style filters (W&B's) as runhook's RE2 filters, where RE2 can say the same:
`$eq`, `$in`, `$regex`, `$contains`, and `$and`/`$or` of one branch. Anything else
raises `Untranslatable` with the reason, never a wider or narrower filter."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from runhook.core.schema import FieldError
from runhook.triggers.pattern import Pattern

# RE2's metacharacters: escaped to mean themselves.
_SPECIAL = frozenset("\\.+*?()|[]{}^$")


class Untranslatable(ValueError):
    """A filter runhook cannot express; the message says which part and why."""


def literal(text: str) -> str:
    """`text` as an RE2 pattern matching exactly those characters."""
    out = []
    for ch in text:
        if ch in _SPECIAL:
            out.append("\\" + ch)
        elif not ch.isprintable():
            out.append(f"\\x{{{ord(ch):x}}}")
        else:
            out.append(ch)
    return "".join(out)


def conditions(expression: Any) -> list[tuple[str, Any]]:
    """The (field, condition) pairs a filter ANDs together: `$and` is flattened, an `$or`
    of one branch is that branch; several `$or` branches are refused."""
    if expression is None:
        return []
    if not isinstance(expression, Mapping):
        raise Untranslatable(f"expected a filter object, got {expression!r}")
    out: list[tuple[str, Any]] = []
    for key, value in expression.items():
        if key in ("$and", "$or"):
            if not isinstance(value, list):
                raise Untranslatable(f"{key} takes a list, got {value!r}")
            if key == "$or" and len(value) > 1:
                raise Untranslatable(f"$or of {len(value)} branches: a runhook filter is "
                                     "one condition per field, ANDed")
            for branch in value:
                out.extend(conditions(branch))
        elif key.startswith("$"):
            raise Untranslatable(f"{key} at the top of a filter: runhook has no such operator")
        else:
            out.append((key, value))
    return out


def pattern(field: str, condition: Any) -> str:
    """One field's condition as an RE2 pattern (search semantics, as runhook's filters)."""
    if not isinstance(condition, Mapping):
        condition = {"$eq": condition}  # {"alias": "prod"} is MongoDB's implicit $eq
    if len(condition) != 1:
        raise Untranslatable(f"{field}: {len(condition)} operators on one field "
                             f"({', '.join(condition)}); runhook takes one")
    (op, value), = condition.items()
    if op == "$eq" and isinstance(value, str):
        source = f"^{literal(value)}$"
    elif op == "$in" and isinstance(value, list) and value \
            and all(isinstance(v, str) for v in value):
        source = "^(?:" + "|".join(literal(v) for v in value) + ")$"
    elif op == "$contains" and isinstance(value, str):
        source = literal(value)
    elif op == "$regex" and isinstance(value, str):
        source = value
    elif op in ("$ne", "$nin", "$not"):
        raise Untranslatable(f"{field}: {op} (a negation): RE2 has no lookahead to say "
                             "'anything but', and runhook's filters only match")
    else:
        raise Untranslatable(f"{field}: {op} {value!r}: runhook's filters translate $eq, $in, "
                             "$regex and $contains of strings")
    try:
        Pattern(field, source)
    except FieldError as exc:
        raise Untranslatable(f"{field}: {exc.message}") from None
    return source


def exact(field: str, condition: Any) -> list[str]:
    """A condition that must be exact names (runhook's `user`): $eq or $in of strings."""
    if not isinstance(condition, Mapping):
        condition = {"$eq": condition}
    (op, value), = condition.items() if len(condition) == 1 else ((None, None),)
    if op == "$eq" and isinstance(value, str):
        return [value]
    if op == "$in" and isinstance(value, list) and value and all(isinstance(v, str)
                                                                  for v in value):
        return list(value)
    raise Untranslatable(f"{field}: runhook's `user` takes exact names ($eq or $in), "
                         f"not {condition!r}")
