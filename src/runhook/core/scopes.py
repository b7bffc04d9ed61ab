"""Scope strings (`project:E/P`, `registry:E/R`, `entity:E`, `org:NAME`) and which event
kinds each allows."""

from __future__ import annotations

import re

from runhook.core.events import Event

# Kinds about one version of a collection, and about the collection itself (its tags).
VERSION_KINDS = frozenset({
    "CREATE_ARTIFACT", "LINK_ARTIFACT", "UNLINK_ARTIFACT",
    "ADD_ARTIFACT_ALIAS", "ADD_ARTIFACT_TAG", "REMOVE_ARTIFACT_TAG",
})
COLLECTION_KINDS = frozenset({"ADD_COLLECTION_TAG", "REMOVE_COLLECTION_TAG"})
ARTIFACT_KINDS = VERSION_KINDS | COLLECTION_KINDS
# Kinds that fire for one run; GROUP_FINISHED fires for a group of runs (a sweep).
RUN_KINDS = frozenset({
    "RUN_METRIC_THRESHOLD", "RUN_METRIC_CHANGE", "RUN_METRIC_ZSCORE", "RUN_STATE",
    "RUN_STALLED", "RUN_METRIC_NONFINITE",
})
GROUP_KINDS = frozenset({"GROUP_FINISHED"})

# The event kinds each scope produces: a project has no links, a registry no creations
# and no runs. An automation asking its scope for another kind could never fire, so it
# is a load error. Run kinds at `entity:` (and `org:`, a list of entities) watch the runs
# of every project of the entity, each project's runs in that project's own actor.
ALLOWED_KINDS = {
    "project": frozenset({
        "CREATE_ARTIFACT", "ADD_ARTIFACT_ALIAS", "ADD_ARTIFACT_TAG", "REMOVE_ARTIFACT_TAG",
    }) | COLLECTION_KINDS | RUN_KINDS | GROUP_KINDS,
    "registry": frozenset({
        "LINK_ARTIFACT", "UNLINK_ARTIFACT", "ADD_ARTIFACT_ALIAS", "ADD_ARTIFACT_TAG",
        "REMOVE_ARTIFACT_TAG",
    }) | COLLECTION_KINDS,
    "entity": ARTIFACT_KINDS | RUN_KINDS,
    "org": ARTIFACT_KINDS | RUN_KINDS,
}

_PART = r"[^/\s:]+"
_SCOPE = re.compile(rf"^(project|registry):{_PART}/{_PART}$|^(entity|org):{_PART}$")
ENTITY_NAME = re.compile(rf"^{_PART}$")


def scope_kind(scope: str) -> str:
    """`project`, `registry`, `entity` or `org`; ValueError for anything else."""
    if not _SCOPE.match(scope):
        raise ValueError(
            f"expected 'project:ENTITY/PROJECT', 'registry:ENTITY/REGISTRY', "
            f"'entity:ENTITY' or 'org:NAME', got {scope!r}")
    return scope.split(":", 1)[0]


def scope_keys(event: Event) -> tuple[str, str]:
    """Every scope an event is seen in: where it happened, and its entity."""
    return event.location, f"entity:{event.entity}"
