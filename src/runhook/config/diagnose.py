"""Every problem of a configuration file in one pass, each with its path; enum errors
list the allowed values and a misspelt name gets the closest one (core.words.closest).

msgspec stops at a file's first error. Here each unit (the server table, each secret,
integration and automation) is checked on its own, and within a unit the offending
value is cut out and the unit checked again, so one bad field hides no other."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import msgspec
from msgspec import inspect

from runhook.config import model, spellings
from runhook.config.cluster import Cluster
from runhook.config.remote import Ingest, Source
from runhook.config.secrets import SecretSource
from runhook.core.schema import field_error
from runhook.core.words import closest

# A unit with more problems than this is reported as far as this: past it the file
# is more wrong than right, and the list would bury the first problems.
MOST_PER_UNIT = 50

_UNKNOWN = re.compile(r"^object contains unknown field `(.+)`$")
_MISSING = re.compile(r"^object missing required field `(.+)`$")
_ENUM = re.compile(r"^invalid value (.+)$")
_SEGMENT = re.compile(r"\.([^.\[]+)|\[(\d+|\.\.\.)\]")


def problems(raw: dict[str, Any]) -> tuple[list[str], set[str]]:
    """The structural problems of a decoded TOML document, and the names of the
    secrets and integrations that failed (an automation naming one is not blamed)."""
    raw, found = spellings.canonical(raw)  # W&B's spellings are runhook's (docs/wandb.md)
    failed: set[str] = set()
    for key in raw:
        if key not in model.Config.__struct_fields__:
            found.append(f"{key}: unknown table{_closest(key, model.Config.__struct_fields__)}")
    units: list[tuple[str, Any, Any]] = []
    for table_name, table_kind in (("server", model.Server), ("ingest", Ingest),
                                   ("cluster", Cluster)):
        if table_name in raw:
            units.append((table_name, raw[table_name], table_kind))
    for table, kind in (("secrets", SecretSource), ("integrations", model.Integration),
                        ("sources", Source), ("scopes", model.ScopeOptions),
                        ("orgs", model.OrgOptions)):
        entries = raw.get(table, {})
        if not isinstance(entries, dict):
            found.append(f"{table}: expected a table")
            continue
        units.extend((f"{table}.{name}", value, kind) for name, value in entries.items())
    automations = raw.get("automations", [])
    if not isinstance(automations, list):
        found.append("automations: expected an array of tables ([[automations]])")
    else:
        units.extend((f"automations[{i}]", value, model.Automation)
                     for i, value in enumerate(automations))
    for where, value, kind in units:
        unit = unit_problems(where, value, kind)
        if unit and where.startswith(("secrets.", "integrations.", "sources.")):
            failed.add(where.split(".", 1)[1])
        if unit and where.startswith("automations[") and isinstance(value, dict):
            unit = [f"{p} (automation {value['name']!r})" if isinstance(value.get("name"), str)
                    else p for p in unit]
        found.extend(unit)
    return found, failed


def unit_problems(where: str, value: Any, kind: Any) -> list[str]:
    """Check `value` as `kind` until it converts, cutting out each bad part."""
    return repaired(where, value, kind)[0]


def repaired(where: str, value: Any, kind: Any) -> tuple[list[str], Any]:
    """The problems of `value` as `kind`, and `value` with its bad parts cut out when
    that converts (None when it does not, or when its tag was guessed): the rest of
    a table with an unknown field is still checked as the daemon would."""
    value = _copy(value)
    guessed: str | None = None  # where a tagged union's bad tag was replaced by a guess
    found: list[str] = []
    cut: set[tuple[str, str]] = set()  # (object path, field) removed by us
    emptied: set[str] = set()  # lists we removed items from
    # For each list we removed items from, the original index of each item left,
    # so a later problem is reported at the index the file has.
    originals: dict[str, list[int]] = {}
    for _ in range(MOST_PER_UNIT):
        try:
            msgspec.convert(value, kind)
            return found, None if guessed is not None else value
        except msgspec.ValidationError as exc:
            message = str(exc)
        parsed = field_error(message)
        path, reason = parsed if parsed is not None else ("", message[:1].lower() + message[1:])
        missing = _MISSING.match(reason)
        unknown = _UNKNOWN.match(reason)
        # What our own cuts caused (a misspelt field now missing, a list emptied)
        # was reported as its cause; it is cut in turn, silently. So is what a guessed
        # tag caused: a field of the kind meant may be unknown to the kind guessed.
        consequence = (missing is not None and (path, missing.group(1)) in cut) \
            or path in emptied or (path == guessed and (missing or unknown) is not None)
        hint = _hint(kind, value, path, reason)
        if not consequence:
            shown = _original(path, originals)
            full = where + ("." + shown if shown and not shown.startswith("[") else shown)
            found.append(f"{full}: {reason}{hint}{model.HINTS.get(full, '')}")
        meant = _meant(kind, value, path, reason, hint)
        if meant is not None:
            # Cut out, a bad enum value would leave a required field missing and a
            # bad tag the whole table; msgspec checks nothing else of a union member
            # whose tag it does not know. With the value meant, the rest is checked:
            # a bad `cmp` beside a misspelt `kind` shows.
            *parents, field = _segments(path)
            _at(value, _join(parents))[field] = meant[0]
            if meant[1]:
                guessed = _join(parents)
            continue
        node = _at(value, path) if unknown and "..." not in path else None
        given = node.get(unknown.group(1)) if isinstance(node, dict) and unknown else None
        removed = _cut(value, path, unknown.group(1) if unknown else None)
        if removed is None:
            return found, None
        cut.add(removed)
        if unknown:
            # The name it was probably meant to be: "missing `threshold`" follows.
            suggestion = hint.partition("did you mean '")[2].rstrip("'?")
            if suggestion:
                cut.add((path, suggestion))
                # ... and the rest is checked as meant: `alow_http = true` must not
                # also be reported as plain http without allow_http.
                node = _at(value, path)
                if isinstance(node, dict) and suggestion not in node:
                    node[suggestion] = given
        elif removed[1].isdigit():
            emptied.add(removed[0])
            left = originals.setdefault(removed[0], list(range(len(_at(value, removed[0])) + 1)))
            left.pop(int(removed[1]))
    return found, None


def _meant(kind: Any, value: Any, path: str, reason: str, hint: str) -> tuple[str, bool] | None:
    """What a value not allowed at `path` was probably meant to be (the one suggested;
    for a tagged union's tag no name is near, the member that has the most of the
    fields given), and whether it is such a tag: a guess, whose fields may not be the
    ones given (W&B's `name` is `metric` only once the kind is known)."""
    segments = _segments(path)
    if not _ENUM.match(reason) or not segments or "..." in segments:
        return None
    parent = _type_at(kind, value, segments[:-1], resolve_union=False)
    members = [t for t in _members(parent) if isinstance(t, inspect.StructType) and t.tag]
    tag = bool(members) and members[0].tag_field == segments[-1]
    if "did you mean '" in hint:
        return hint.rpartition("did you mean '")[2].rstrip("'?"), tag
    given = _at(value, _join(segments[:-1]))
    if not tag or not isinstance(given, dict):
        return None
    best = max(members, key=lambda t: len(set(given) & {f.encode_name for f in t.fields}))
    return str(best.tag), True


def _at(value: Any, path: str) -> Any:
    for segment in _segments(path):
        value = value[segment]
    return value


def _original(path: str, originals: dict[str, list[int]]) -> str:
    """`path` with list indices as they are in the file, before our removals."""
    segments = _segments(path)
    for i, segment in enumerate(segments):
        left = originals.get(_join(segments[:i]))
        if isinstance(segment, int) and left is not None and segment < len(left):
            segments[i] = left[segment]
    return _join(segments)


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def _segments(path: str) -> list[str | int]:
    return [m.group(1) if m.group(1) is not None else
            (int(m.group(2)) if m.group(2).isdigit() else "...")
            for m in _SEGMENT.finditer("." + path if path and path[0] != "[" else path)]


def _join(segments: list[str | int]) -> str:
    out = ""
    for segment in segments:
        out += f"[{segment}]" if isinstance(segment, int) else (f".{segment}" if out else segment)
    return out


def _cut(value: Any, path: str, field: str | None) -> tuple[str, str] | None:
    """Remove the bad part: `field` of the object at `path`, or the value at `path`.
    Returns (object path, key) removed, or None when nothing can be (the unit itself)."""
    segments = _segments(path)
    key: str | int
    if field is None:
        if not segments or "..." in segments:
            return None
        *parents, key = segments
    else:
        parents, key = segments, field
    node = value
    for segment in parents:
        if segment == "...":
            return None
        node = node[segment]
    if isinstance(node, dict) and key in node:
        del node[key]
    elif isinstance(node, list) and isinstance(key, int) and key < len(node):
        node.pop(key)
    else:
        return None
    return _join(parents), str(key)


def _hint(kind: Any, value: Any, path: str, reason: str) -> str:
    """Allowed values for an enum, the closest name for a typo."""
    unknown = _UNKNOWN.match(reason)
    if unknown:
        info = _type_at(kind, value, _segments(path))
        if isinstance(info, inspect.StructType):
            return _closest(unknown.group(1), [f.encode_name for f in info.fields])
        return ""
    enum = _ENUM.match(reason)
    if not enum:
        return ""
    segments = _segments(path)
    given = enum.group(1).strip("'\"")
    parent = _type_at(kind, value, segments[:-1], resolve_union=False)
    members = [t for t in _members(parent) if isinstance(t, inspect.StructType) and t.tag]
    if members and members[0].tag_field == segments[-1]:
        # A tagged union's `kind`: the allowed values are its members' tags. A
        # near-miss of a W&B name means what that name means, whatever is closer.
        values = [str(t.tag) for t in members]
        meant = spellings.alias_of(given)
        if meant in values:
            return f" (allowed: {', '.join(sorted(values))}); did you mean {meant!r}?"
    else:
        info = _type_at(kind, value, segments)
        values = [str(v) for t in _members(info) if isinstance(t, inspect.LiteralType)
                  for v in t.values]
    if not values:
        return ""
    return f" (allowed: {', '.join(sorted(values))}){_closest(given, values, value=True)}"


def _members(info: Any) -> tuple[Any, ...]:
    return info.types if isinstance(info, inspect.UnionType) else (info,)


def _type_at(kind: Any, value: Any, segments: list[str | int],
             resolve_union: bool = True) -> Any:
    """The msgspec type information at a path, choosing a tagged union's member by
    the tag the value carries."""
    info: Any = inspect.type_info(kind)
    for i, segment in enumerate(segments + [None]):
        if isinstance(info, inspect.UnionType) and (resolve_union or segment is not None):
            structs = [t for t in info.types if isinstance(t, inspect.StructType)]
            containers = [t for t in info.types if isinstance(t, (inspect.ListType,
                                                                  inspect.DictType))]
            tag = value.get(structs[0].tag_field) if structs and isinstance(value, dict) \
                else None
            chosen = [t for t in structs if t.tag == tag] or structs or containers
            if chosen and (len(chosen) == 1 or tag is not None):
                info = chosen[0]
        if segment is None:
            return info
        if isinstance(info, inspect.StructType) and isinstance(segment, str):
            fields = {f.encode_name: f.type for f in info.fields}
            if segment not in fields:
                return None
            info = fields[segment]
        elif isinstance(info, inspect.ListType):
            info = info.item_type
        elif isinstance(info, inspect.DictType):
            info = info.value_type
        else:
            return None
        try:
            value = value[segment] if segment != "..." else None
        except (KeyError, IndexError, TypeError):
            value = None
    return info


def _closest(given: str, names: Any, value: bool = False) -> str:
    suggestion = closest(given, list(names), value)
    return f"; did you mean {suggestion!r}?" if suggestion else ""



_INDEX = re.compile(r"^automations\[(\d+)\]")


def check(data: bytes, source: str) -> list[str]:
    """Every problem of a configuration file, structural and semantic, in one pass
    (`runhook check-config`); empty when the daemon would run it."""
    from runhook.config.settings import build  # settings is built on this room's model
    try:
        build(model.anchored(model.decode(data, source), Path(source).parent), source)
        return []
    except model.ConfigError as exc:
        reported = exc.problems
    try:
        raw = tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError, RecursionError, ValueError):
        return reported
    if not _structural(raw):
        return reported  # it decoded: these are build's, already all of them
    found, _ = problems(raw)
    raw = spellings.canonical(raw)[0]
    # Each unit with its bad parts cut out is checked as the daemon would, so a scope
    # error in one automation is reported beside a type error in another, and a bad
    # `rate` beside an unknown field of the same integration. A unit that cannot be
    # repaired is left out (and an automation naming it is not blamed for that).
    failed: set[str] = set()

    def table(name: str, kind: Any) -> dict[str, Any]:
        kept: dict[str, Any] = {}
        entries = raw.get(name, {})
        for key, value in entries.items() if isinstance(entries, dict) else ():
            fixed = repaired(f"{name}.{key}", value, kind)[1]
            if fixed is None:
                failed.add(key)
            else:
                kept[key] = fixed
        return kept

    def single(name: str, kind: Any) -> Any:
        return repaired(name, raw.get(name, {}), kind)[1] or {}

    automations = raw.get("automations", [])
    fixed = [repaired(f"automations[{i}]", a, model.Automation)[1]
             for i, a in enumerate(automations if isinstance(automations, list) else [])]
    good = [i for i, a in enumerate(fixed) if a is not None]
    partial = {
        "server": single("server", model.Server), "ingest": single("ingest", Ingest),
        "cluster": single("cluster", Cluster), "secrets": table("secrets", SecretSource),
        "integrations": table("integrations", model.Integration),
        "sources": table("sources", Source), "scopes": table("scopes", model.ScopeOptions),
        "orgs": table("orgs", model.OrgOptions), "automations": [fixed[i] for i in good],
    }
    try:
        build(model.anchored(msgspec.convert(partial, model.Config), Path(source).parent),
              source)
    except model.ConfigError as exc:
        for problem in exc.problems:
            if any(f"{name!r} is not declared" in problem for name in failed):
                continue  # its declaration failed, and was reported
            found.append(_INDEX.sub(lambda m: f"automations[{good[int(m.group(1))]}]", problem))
    except msgspec.ValidationError:
        pass  # a unit that passed alone fails together (unlikely): the list stands
    return found


def _structural(raw: dict[str, Any]) -> bool:
    try:
        msgspec.convert(spellings.canonical(raw)[0], model.Config)
    except msgspec.ValidationError:
        return True
    return False
