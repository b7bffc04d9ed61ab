"""Artifact and registry triggers: kinds, their filters, and the events that produce them."""

from __future__ import annotations

from collections.abc import Sequence

from runhook.core.events import (
    AliasAdded,
    ArtifactCreated,
    ArtifactLinked,
    ArtifactUnlinked,
    CollectionEvent,
    CollectionTagAdded,
    CollectionTagRemoved,
    Occurrence,
    TagAdded,
    TagRemoved,
)
from runhook.core.schema import Table
from runhook.triggers.pattern import compile_filter


class ArtifactFilter(Table, tag_field="kind", frozen=True):
    """Filters every artifact kind takes: `collection` is a regular expression
    (search semantics, anchor it with ^…$ for an exact name); `artifact_type` is exact."""

    collection: str | None = None
    artifact_type: str | None = None


class CreateArtifact(ArtifactFilter, tag="CREATE_ARTIFACT", kw_only=True, frozen=True):
    pass


class LinkArtifact(ArtifactFilter, tag="LINK_ARTIFACT", kw_only=True, frozen=True):
    # W&B's `ArtifactEvent.alias`: matches when any alias the linked version carries does.
    alias: str | None = None


class UnlinkArtifact(ArtifactFilter, tag="UNLINK_ARTIFACT", kw_only=True, frozen=True):
    pass


class AddArtifactAlias(ArtifactFilter, tag="ADD_ARTIFACT_ALIAS", kw_only=True, frozen=True):
    alias: str | None = None


class AddArtifactTag(ArtifactFilter, tag="ADD_ARTIFACT_TAG", kw_only=True, frozen=True):
    tag: str | None = None


class RemoveArtifactTag(ArtifactFilter, tag="REMOVE_ARTIFACT_TAG", kw_only=True, frozen=True):
    tag: str | None = None


class AddCollectionTag(ArtifactFilter, tag="ADD_COLLECTION_TAG", kw_only=True, frozen=True):
    tag: str | None = None


class RemoveCollectionTag(ArtifactFilter, tag="REMOVE_COLLECTION_TAG", kw_only=True,
                          frozen=True):
    tag: str | None = None


ArtifactTriggers = (CreateArtifact | LinkArtifact | UnlinkArtifact | AddArtifactAlias
                    | AddArtifactTag | RemoveArtifactTag | AddCollectionTag
                    | RemoveCollectionTag)


_CREATED = (Occurrence("CREATE_ARTIFACT"),)


def occurrences(event: CollectionEvent) -> Sequence[Occurrence]:
    """The event kinds a wire event produces: `artifact.created` is CREATE_ARTIFACT plus
    one ADD_ARTIFACT_ALIAS per alias and one ADD_ARTIFACT_TAG per tag; `artifact.linked`
    is LINK_ARTIFACT plus aliases."""
    if event.__class__ is ArtifactCreated and not event.aliases and not event.tags:
        return _CREATED  # the common creation, shared (0.69 -> 0.1 us an event)
    match event:
        case ArtifactCreated():
            return ([Occurrence("CREATE_ARTIFACT")]
                    + [Occurrence("ADD_ARTIFACT_ALIAS", alias=a) for a in event.aliases]
                    + [Occurrence("ADD_ARTIFACT_TAG", tag=t) for t in event.tags])
        case ArtifactLinked():
            return ([Occurrence("LINK_ARTIFACT")]
                    + [Occurrence("ADD_ARTIFACT_ALIAS", alias=a) for a in event.aliases])
        case ArtifactUnlinked():
            return [Occurrence("UNLINK_ARTIFACT")]
        case AliasAdded():
            return [Occurrence("ADD_ARTIFACT_ALIAS", alias=event.alias)]
        case TagAdded():
            return [Occurrence("ADD_ARTIFACT_TAG", tag=event.tag)]
        case TagRemoved():
            return [Occurrence("REMOVE_ARTIFACT_TAG", tag=event.tag)]
        case CollectionTagAdded():
            return [Occurrence("ADD_COLLECTION_TAG", tag=event.tag)]
        case CollectionTagRemoved():
            return [Occurrence("REMOVE_COLLECTION_TAG", tag=event.tag)]
    raise TypeError(f"not an artifact event: {type(event).__name__}")


class ArtifactChecker:
    """Built once from an automation's `event` table; `matches` is called per occurrence."""

    __slots__ = ("alias", "artifact_type", "collection", "kind", "tag")

    def __init__(self, config: ArtifactFilter) -> None:
        self.kind: str = config.__struct_config__.tag  # type: ignore[assignment]
        self.collection = compile_filter("collection", config.collection)
        self.artifact_type = config.artifact_type
        self.alias = compile_filter("alias", getattr(config, "alias", None))
        self.tag = compile_filter("tag", getattr(config, "tag", None))

    def matches(self, event: CollectionEvent, occurrence: Occurrence) -> bool:
        if occurrence.kind != self.kind:
            return False
        if self.collection is not None and not self.collection.search(event.collection):
            return False
        if self.artifact_type is not None and event.artifact_type != self.artifact_type:
            return False
        if self.alias is not None:
            if occurrence.alias is None and isinstance(event, ArtifactLinked):
                # A link's own firing: any alias the linked version carries will do.
                if not any(self.alias.search(alias) for alias in event.aliases):
                    return False
            elif not self.alias.search(occurrence.alias or ""):
                return False
        return self.tag is None or self.tag.search(occurrence.tag or "")


def from_config(config: ArtifactFilter) -> ArtifactChecker:
    return ArtifactChecker(config)
