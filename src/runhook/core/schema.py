"""The base of every configuration table, and the error that names a field."""

from __future__ import annotations

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


class StartupError(Exception):
    """The daemon cannot start: a port or socket taken, a database that cannot be
    opened. The message says what and where; `runhook serve` prints it and exits 1."""
