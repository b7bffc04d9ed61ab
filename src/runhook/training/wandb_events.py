"""The wire events an artifact a wandb run logged or linked makes (pure)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

REGISTRY_PREFIX = "wandb-registry-"  # W&B's registries are projects named so
# W&B puts `latest` on every new version itself: not an alias anyone added.
IMPLICIT_ALIASES = frozenset({"latest"})


def collection_name(name: str) -> str:
    """`resnet:v3` or `acme/vision/resnet:prod` -> `resnet`."""
    return name.rsplit("/", 1)[-1].split(":", 1)[0]


def version_index(version: str | None) -> int | None:
    """W&B's `v3` as 3; None when W&B has not said (offline, or not committed yet)."""
    if version and version[:1] == "v" and version[1:].isdigit():
        return int(version[1:])
    return None


def _aliases(aliases: Iterable[str] | None) -> list[str]:
    return [str(a) for a in aliases or () if str(a) not in IMPLICIT_ALIASES]


def _jsonable(metadata: Mapping[str, Any] | None) -> dict[str, Any]:
    """Metadata entries the wire can carry (numbers, strings, lists, maps of them)."""
    out: dict[str, Any] = {}
    for key, value in (metadata or {}).items():
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError):
            continue
        out[str(key)] = value
    return out


def created(entity: str, project: str, name: str, version: int, artifact_type: str | None,
            aliases: Iterable[str] | None, tags: Iterable[str] | None,
            metadata: Mapping[str, Any] | None, author: str) -> dict[str, Any]:
    event: dict[str, Any] = {
        "type": "artifact.created", "entity": entity, "project": project,
        "collection": collection_name(name), "version": version, "author": author,
        "aliases": _aliases(aliases), "tags": [str(t) for t in tags or ()],
        "metadata": _jsonable(metadata)}
    if artifact_type:
        event["artifact_type"] = artifact_type
    return event


def linked(entity: str, project: str, target_path: str, version: int, artifact_type: str | None,
           aliases: Iterable[str] | None, source: str, author: str) -> dict[str, Any]:
    """`link_artifact(art, "wandb-registry-model/resnet")` is a link into the registry
    `model`; `entity/project/collection` or `project/collection` into a project's."""
    parts = target_path.split("/")
    collection = collection_name(parts[-1])
    place = parts[-2] if len(parts) >= 2 else project
    entity = parts[-3] if len(parts) >= 3 else entity
    event: dict[str, Any] = {"type": "artifact.linked", "entity": entity,
                             "collection": collection, "version": version, "author": author,
                             "aliases": _aliases(aliases), "source": source}
    if place.startswith(REGISTRY_PREFIX):
        event["registry"] = place.removeprefix(REGISTRY_PREFIX)
    else:
        event["project"] = place
    if artifact_type:
        event["artifact_type"] = artifact_type
    return event
