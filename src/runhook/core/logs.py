"""Logging set-up: text or JSON lines on stderr, with every secret value redacted."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable

import msgspec


class RedactingFilter(logging.Filter):
    """Renders each record's message once and replaces secret values in it, so
    no handler can ever print a secret, whatever a caller passed as an argument."""

    def __init__(self, redact: Callable[[str], str]) -> None:
        super().__init__()
        self.redact = redact

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self.redact(record.getMessage())
        record.args = None
        if record.exc_info:
            record.exc_text = self.redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


# Every control character but tab, and the Unicode line breaks, as escapes.
_ESCAPES = {c: f"\\x{c:02x}" for c in (*range(32), 0x7F, 0x85) if c != 9} | {
    10: "\\n", 13: "\\r", 0x2028: "\\u2028", 0x2029: "\\u2029"}


class TextFormatter(logging.Formatter):
    """One record, one line: a stranger's string in a message (an execution id from
    NATS, a field of a refused record) cannot forge a log line with a newline, its
    control characters are escaped (a traceback, ours, keeps its lines)."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = record.message.translate(_ESCAPES)
        return super().formatMessage(record)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        body = {"time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
                + f".{int(record.msecs):03d}Z",
                "level": record.levelname.lower(), "logger": record.name,
                "message": record.getMessage()}
        if record.exc_text:
            body["exception"] = record.exc_text
        return msgspec.json.encode(body).decode()


def setup(level: str, fmt: str, redact: Callable[[str], str]) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RedactingFilter(redact))
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiosqlite's DEBUG lines print every statement with its parameters: too many
    # to read, and row data has no place in a log.
    logging.getLogger("aiosqlite").setLevel(max(root.level, logging.INFO))


class LogLimit:
    """At most one line per `interval` seconds for one kind of event that strangers
    can cause (a refused token, a forged webhook): a flood of them must not become a
    flood of log lines. `allow()` is None while quiet, else how many it held back."""

    def __init__(self, interval: float = 10.0) -> None:
        self._interval = interval
        self._next = 0.0
        self._held = 0

    def allow(self) -> int | None:
        now = time.monotonic()
        if now < self._next:
            self._held += 1
            return None
        held, self._held = self._held, 0
        self._next = now + self._interval
        return held


class Throttled(logging.Filter):
    """For a logger a stranger can make write (aiohttp's, for each malformed request):
    a record carrying one of `kinds` passes once per `interval` seconds, as one line
    without its traceback (the client's fault, not ours), saying how many were held
    back; every other record passes untouched, traceback and all."""

    def __init__(self, kinds: tuple[type[BaseException], ...], interval: float = 10.0) -> None:
        super().__init__()
        self._kinds = kinds
        self._limit = LogLimit(interval)

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, self._kinds):
            return True
        held = self._limit.allow()
        if held is None:
            return False
        record.msg = f"{record.getMessage()}: {exc}" + (
            f" (and {held} more not logged)" if held else "")
        record.args = None
        record.exc_info = None
        record.exc_text = None
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True
