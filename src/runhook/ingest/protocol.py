"""The socket's request union (events, queries, commands), its decoder and error wording."""

from __future__ import annotations

import json
from typing import Annotated, Any, get_args

import msgspec

from runhook.core.events import ArtifactEvents, RunEvents
from runhook.core.executions import State
from runhook.core.schema import field_error


class Query(msgspec.Struct, kw_only=True, tag_field="type", forbid_unknown_fields=True):
    """Requests of the CLI and dashboards; answered with one JSON line each."""


class History(Query, tag="query.history", kw_only=True):
    automation: str | None = None
    state: State | None = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 50
    since: float | None = None


class ExecutionQuery(Query, tag="query.execution", kw_only=True):
    id: str


class Status(Query, tag="query.status", kw_only=True):
    pass


class Enable(Query, tag="command.enable", kw_only=True):
    integration: str


class Redeliver(Query, tag="command.redeliver", kw_only=True):
    """One execution by `id`, or every FAILED one of the last `since` seconds."""

    id: str | None = None
    failed: bool = False
    since: Annotated[float, msgspec.Meta(gt=0)] | None = None
    automation: str | None = None

    def __post_init__(self) -> None:
        if (self.id is None) == (not self.failed):
            raise ValueError("give either `id`, or `failed` with `since`")
        if self.failed and self.since is None:
            raise ValueError("`failed` needs `since` (seconds)")


class TestIntegration(Query, tag="command.test", kw_only=True):
    integration: str
    payload: str | None = None


class Reload(Query, tag="command.reload", kw_only=True):
    pass


class ConsoleRotate(Query, tag="command.console_rotate", kw_only=True):
    """A new console login token: every session of the old one is refused."""


# A silence's comment, as `silence add` takes it and as a cluster's bucket may hold it.
SilenceComment = Annotated[str, msgspec.Meta(min_length=1, max_length=1000)]


class SilenceAdd(Query, tag="command.silence_add", kw_only=True):
    """Silence `automation` (or `all`) for `duration`: seconds, or a duration such as
    "2h"; `run_name`, `group` and `collection` narrow it (RE2, search semantics)."""

    automation: str | None = None
    all: bool = False
    run_name: str | None = None
    group: str | None = None
    collection: str | None = None
    duration: Annotated[float, msgspec.Meta(gt=0)] | str
    comment: SilenceComment

    def __post_init__(self) -> None:
        if (self.automation is None) == (not self.all):
            raise ValueError("give either `automation`, or `all`: true")


class SilenceList(Query, tag="command.silence_list", kw_only=True):
    pass


class SilenceExpire(Query, tag="command.silence_expire", kw_only=True):
    id: str


Queries = (History | ExecutionQuery | Status | Enable | Redeliver | TestIntegration | Reload
           | ConsoleRotate | SilenceAdd | SilenceList | SilenceExpire)
Request = ArtifactEvents | RunEvents | Queries
# The classes a decoded query or command has: a set lookup a line is cheaper than
# isinstance(request, Query).
QUERY_CLASSES = frozenset(get_args(Queries))

EVENT_TYPES = ("artifact.created", "artifact.linked", "artifact.unlinked", "artifact.alias_added",
               "artifact.tag_added", "artifact.tag_removed", "collection.tag_added",
               "collection.tag_removed", "run.metrics", "run.state",
               "run.heartbeat")
QUERY_TYPES = ("query.history", "query.execution", "query.status", "command.enable",
               "command.redeliver", "command.test", "command.reload", "command.console_rotate",
               "command.silence_add",
               "command.silence_list", "command.silence_expire")

_decoder = msgspec.json.Decoder(Request)
_encoder = msgspec.json.Encoder()

OK = b'{"ok":true}\n'
OK_DUPLICATE = b'{"ok":true,"duplicate":true}\n'


class BadLine(ValueError):
    """A line that is not a valid request; the message names the field."""


def decode(line: bytes) -> Any:
    """One request from one line, or BadLine: whatever the bytes, no other error
    escapes, so one hostile line never costs the answers of the lines around it."""
    try:
        return _decode(line)
    except UnicodeDecodeError:
        raise BadLine("not valid UTF-8") from None
    except RecursionError:
        raise BadLine("nested too deeply") from None


def decode_block(block: bytes) -> list[Any] | None:
    """Every line of `block` in one call, when each is a valid request; None when
    any is not (the caller then decodes line by line, for each line's own error)."""
    try:
        return _decoder.decode_lines(block)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):  # ValidationError too
        return None


def _decode(line: bytes) -> Any:
    """Falls back to Python's json module only for lines msgspec refuses, which is
    how `NaN` / `Infinity` (Python's json.dumps output) get in."""
    try:
        return _decoder.decode(line)
    except msgspec.ValidationError as exc:
        raise BadLine(_name_key(_reword(str(exc)), line)) from None
    except msgspec.DecodeError as exc:
        # Which exception msgspec raises for bad UTF-8 changed between releases
        # (UnicodeDecodeError before 0.23, DecodeError since): decide by the bytes.
        try:
            line.decode("utf-8")
        except UnicodeDecodeError:
            raise BadLine("not valid UTF-8") from None
        if b"NaN" in line or b"Infinity" in line:
            try:
                document = json.loads(line)
                # json accepts a lone surrogate escape ("\ud800") that msgspec
                # refuses and SQLite cannot store: it would fail the whole batch.
                msgspec.json.encode(document)
            except UnicodeEncodeError:
                raise BadLine("not valid UTF-8: a lone surrogate escape") from None
            except ValueError:
                raise BadLine(f"not valid JSON: {exc}") from None
            try:
                return msgspec.convert(document, Request)
            except msgspec.ValidationError as exc2:
                raise BadLine(_reword(str(exc2))) from None
        raise BadLine(f"not valid JSON: {exc}") from None


def _reword(message: str) -> str:
    parsed = field_error(message)
    if parsed is None:
        if message.startswith("Object missing required field"):
            return "missing required field" + message[len("Object missing required field"):]
        if message.startswith("Object contains unknown field"):
            return "unknown field" + message[len("Object contains unknown field"):]
        if message.startswith("Expected `object`"):
            return "expected a JSON object with a `type`" + message[len("Expected `object`"):]
        return message
    path, reason = parsed
    if path == "type" and reason.startswith("invalid value"):
        return (f"field `type`: unknown type {reason[len('invalid value '):]} "
                f"(expected one of {', '.join(EVENT_TYPES + QUERY_TYPES)})")
    if reason.startswith("object missing required field"):
        reason = reason[len("object "):]
    return f"field `{path}`: {reason}"


def _name_key(message: str, line: bytes) -> str:
    """msgspec says `values[...]` for a map entry; name the metric instead. `values`
    is the only typed map on the wire, so the bad entry is the first non-number."""
    if not message.startswith("field `values[...]`"):
        return message
    try:
        values = json.loads(line).get("values", {})
    except (ValueError, AttributeError, RecursionError):
        return message
    for key, value in values.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            return message.replace("values[...]", f"values.{key}", 1)
    return message


def error_line(line_no: int, message: str) -> bytes:
    return _encoder.encode({"ok": False, "error": f"line {line_no}: {message}"}) + b"\n"


def answer(body: dict[str, Any]) -> bytes:
    return _encoder.encode({"ok": True, **body}) + b"\n"


def refusal(message: str) -> bytes:
    """The answer to a query or command the daemon cannot carry out."""
    return _encoder.encode({"ok": False, "error": message}) + b"\n"
