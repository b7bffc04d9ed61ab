"""`${artifact_metadata.KEY}` on every artifact kind (docs/guarantees.md): the metadata of an
`artifact.created` kept per version, in memory shared by a daemon's scopes and in the
database, bounded per entity, so a version's later link, alias and tag events render it."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

import msgspec

from runhook.core import constants
from runhook.core.events import ArtifactCreated, ArtifactEvent, ArtifactLinked, CollectionEvent
from runhook.store.database import Statement
from runhook.store.statements import FORGET_METADATA, UPSERT_METADATA

# The events a keeper sees: a creation brings metadata; a link makes the registry's
# version the source's (its alias and tag events find it under the registry's name).
KEPT_EVENTS = (ArtifactCreated, ArtifactLinked)


def version_key(event: ArtifactEvent) -> str:
    """The version as W&B names it, `${artifact_version}`: entity/place/collection:vN."""
    return f"{event.entity}/{event.project or event.registry}/{event.collection}:v{event.version}"


class Remembered:
    """Per entity, the metadata of its latest versions, oldest forgotten first. Each
    entity's part is written by one actor, its keeper (the `entity:E` scope's, which
    sees every creation and link of E) in the commit of the event; every scope reads."""

    def __init__(self, cap: int = constants.METADATA_VERSIONS_KEPT,
                 max_bytes: int = constants.METADATA_BYTES_KEPT) -> None:
        self.cap = cap
        self.max_bytes = max_bytes
        # Entities whose metadata is kept (some automation renders it on a later
        # event), and their keepers' scopes.
        self.kept: frozenset[str] = frozenset()
        self.keepers: frozenset[str] = frozenset()
        self._by_entity: dict[str, OrderedDict[str, dict[str, Any]]] = {}

    def keep(self, entities: frozenset[str]) -> None:
        self.kept = entities
        self.keepers = frozenset(f"entity:{entity}" for entity in entities)

    def lookup(self, event: CollectionEvent) -> dict[str, Any] | None:
        """The remembered metadata of the event's version (a link's: of its source)."""
        versions = self._by_entity.get(event.entity)
        if not versions or not isinstance(event, ArtifactEvent):
            return None
        found = versions.get(version_key(event))
        if found is None and isinstance(event, ArtifactLinked) and event.source:
            found = versions.get(event.source)
        return found

    def note(self, scope: str, event: CollectionEvent, statements: list[Statement]
             ) -> dict[str, Any] | None:
        """In the keeper (`scope` = entity:E of a kept entity): remember a creation's
        metadata, or a link's source's under the linked version, adding the rows to
        commit with the event. Returns what the event's firings render."""
        if isinstance(event, KEPT_EVENTS) and scope in self.keepers \
                and scope == f"entity:{event.entity}":
            metadata = event.metadata if isinstance(event, ArtifactCreated) \
                else self.lookup(event)
            if metadata:
                self._keep(scope, version_key(event), metadata, statements)
        if isinstance(event, ArtifactCreated):
            return None  # its own metadata is in its context already
        return self.lookup(event)

    def _keep(self, scope: str, version: str, metadata: dict[str, Any],
              statements: list[Statement]) -> None:
        encoded = msgspec.json.encode(metadata)
        if len(encoded) > self.max_bytes:
            return  # rendered on its creation only: one event must not fill the memory
        versions = self._by_entity.setdefault(scope.partition(":")[2], OrderedDict())
        versions.pop(version, None)
        versions[version] = metadata
        statements.append((UPSERT_METADATA, [(scope, version, encoded.decode())]))
        forgotten = []
        while len(versions) > self.cap:
            forgotten.append((scope, versions.popitem(last=False)[0]))
        if forgotten:
            statements.append((FORGET_METADATA, forgotten))

    def load(self, rows: Iterable[tuple[str, str, str]]) -> None:
        """Every entity's part from the database's rows, oldest first."""
        by_scope: dict[str, list[tuple[str, str]]] = {}
        for scope, version, metadata in rows:
            by_scope.setdefault(scope, []).append((version, metadata))
        for scope, entries in by_scope.items():
            self.restore(scope, entries)

    def restore(self, scope: str, rows: Iterable[tuple[str, str]]) -> None:
        """One keeper's part from what is committed (a failed write is forgotten)."""
        versions: OrderedDict[str, dict[str, Any]] = OrderedDict(
            (version, msgspec.json.decode(metadata)) for version, metadata in rows)
        while len(versions) > self.cap:
            versions.popitem(last=False)
        self._by_entity[scope.partition(":")[2]] = versions


def renders_metadata(automation: Any) -> bool:
    """Whether an artifact automation's action reads `${artifact_metadata.…}` on a kind
    other than CREATE_ARTIFACT (whose event carries it)."""
    if automation.artifact is None or automation.kind == "CREATE_ARTIFACT":
        return False
    action = automation.action
    return any(template is not None and any(
        name.startswith("artifact_metadata") for name in template.variables)
        for template in (action.payload, action.title, action.text))


def kept_entities(automations: Iterable[Any], orgs: dict[str, Any]) -> frozenset[str]:
    """The entities whose versions' metadata is kept: those some automation renders it for."""
    kept: set[str] = set()
    for automation in automations:
        if renders_metadata(automation):
            kind, _, place = automation.scope.partition(":")
            kept.update(orgs[place].entities if kind == "org" else [place.partition("/")[0]])
    return frozenset(kept)
