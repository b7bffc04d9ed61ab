"""The base of every configuration table, and the errors that name a field."""

from __future__ import annotations

import re

import msgspec


class Table(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    """A table of the configuration file. Unknown fields are errors: a misspelt
    `treshold` must stop the daemon at load, not quietly disable an alert."""


class FieldError(ValueError):
    """A value that decodes but makes no sense; `field` is its path below the table."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


# msgspec's ValidationError text: "Expected `int`, got `str` - at `$.server.port`".
_AT = re.compile(r"^(.*) - at `\$\.?(.*)`$")


def field_error(message: str) -> tuple[str, str] | None:
    """A msgspec ValidationError's text as (path, reason), the path without `$.`
    ("" for the top level) and the reason starting lower-case, one wording for a value
    not allowed, so the configuration and the wire protocol word it alike; None when
    msgspec names no path."""
    match = _AT.match(message)
    if match is None:
        return None
    reason, path = match.groups()
    reason = reason[:1].lower() + reason[1:]
    # msgspec says "invalid enum value" for a literal and "invalid value" for a
    # tagged union's tag: to a person both are a value not among the allowed ones.
    if reason.startswith("invalid enum value "):
        reason = "invalid value " + reason[len("invalid enum value "):]
    return path, reason


class StartupError(Exception):
    """The daemon cannot start: a port or socket taken, a database that cannot be
    opened. The message says what and where; `runhook serve` prints it and exits 1."""
