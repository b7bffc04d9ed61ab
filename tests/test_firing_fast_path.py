"""The firing path's shortcuts (a creation's occurrences, a project's artifact context,
an id's cached millisecond) equal the plain definitions they stand for."""

from __future__ import annotations

import itertools
import re
from typing import Any

import msgspec
import pytest

from runhook.core import executions
from runhook.core.events import (
    ArtifactCreated,
    ArtifactEvent,
    ArtifactLinked,
    CollectionEvent,
    CollectionTagAdded,
    Occurrence,
)
from runhook.core.executions import artifact_context, base_context, new_id
from runhook.triggers.artifact import occurrences


def plain_occurrences(event: CollectionEvent) -> list[Occurrence]:
    if isinstance(event, ArtifactCreated):
        return ([Occurrence("CREATE_ARTIFACT")]
                + [Occurrence("ADD_ARTIFACT_ALIAS", alias=a) for a in event.aliases]
                + [Occurrence("ADD_ARTIFACT_TAG", tag=t) for t in event.tags])
    assert isinstance(event, ArtifactLinked)
    return ([Occurrence("LINK_ARTIFACT")]
            + [Occurrence("ADD_ARTIFACT_ALIAS", alias=a) for a in event.aliases])


def plain_context(event: CollectionEvent, occurrence: Occurrence, name: str, execution_id: str,
                  event_time: float) -> dict[str, Any]:
    """artifact_context as it was written before its shortcut: base_context, then the rest."""
    context = base_context(event, name, execution_id, occurrence.kind, event_time, event.author)
    context["artifact_collection_name"] = event.collection
    if occurrence.tag is not None:
        context["tag"] = occurrence.tag
    if not isinstance(event, ArtifactEvent):
        return context
    version = f"{event.entity}/{event.project or event.registry}/{event.collection}" \
              f":v{event.version}"
    context["artifact_version"] = version
    context["artifact_version_index"] = event.version
    context["artifact_version_string"] = version
    if occurrence.alias is not None:
        context["alias"] = occurrence.alias
        context["artifact_version_string"] = version.rsplit(":", 1)[0] + ":" + occurrence.alias
    if isinstance(event, ArtifactCreated) and event.metadata:
        context["artifact_metadata"] = event.metadata
    return context


PLACES = [{"project": "fire"}, {"registry": "models"}, {"registry": "wandb-registry-models"}]
EVENTS: list[CollectionEvent] = [
    kind(entity="acme", collection="c1", version=7, author="ana", **place, **extra)
    for place in PLACES
    for kind, extra in itertools.product(
        (ArtifactCreated, ArtifactLinked),
        ({}, {"aliases": ["prod", "best"]}, {"aliases": ["x"], "tags": ["t1"]},
         {"metadata": {"acc": 0.9, "odd": float("nan")}}))
    if not (kind is ArtifactLinked and ("tags" in extra or "metadata" in extra))
] + [CollectionTagAdded(entity="acme", project="fire", collection="c1", tag="t", author="b")]


@pytest.mark.parametrize("event", EVENTS, ids=repr)
def test_occurrences_and_contexts_equal_the_plain_definition(event):
    found = occurrences(event)
    if not isinstance(event, CollectionTagAdded):
        assert list(found) == plain_occurrences(event)
    for occurrence in found:
        got = artifact_context(event, occurrence, "record", "ex_1", 1.5)
        expected = plain_context(event, occurrence, "record", "ex_1", 1.5)
        # Same keys in the same order: the stored context is their JSON, byte for byte.
        assert list(got.items()) == list(expected.items())
        assert msgspec.json.encode(got) == msgspec.json.encode(expected)


def test_a_project_creation_context_by_hand():
    event = ArtifactCreated(entity="acme", project="fire", collection="c1", version=7,
                            author="ana", metadata={"loss": float("inf"), "acc": float("nan")})
    context = artifact_context(event, occurrences(event)[0], "record", "ex_1", 1.5)
    # JSON has no NaN or infinity: the stored context says null, as before.
    assert msgspec.json.encode(context) == (
        b'{"event_type":"CREATE_ARTIFACT","event_author":"ana","entity_name":"acme",'
        b'"automation_name":"record","execution_id":"ex_1","event_time":"1970-01-01T00:00:01.500Z",'
        b'"project_name":"fire","artifact_collection_name":"c1",'
        b'"artifact_version":"acme/fire/c1:v7","artifact_version_index":7,'
        b'"artifact_version_string":"acme/fire/c1:v7",'
        b'"artifact_metadata":{"loss":null,"acc":null}}')


def test_ids_keep_their_form_sequence_and_order(monkeypatch):
    """ex_ + 12 hex digits of milliseconds + 6 of sequence + 8 random; within a
    millisecond, or when the clock goes back, the sequence goes on in the last one."""
    monkeypatch.setattr(executions, "_last", [0, 0, ""])
    ids = [new_id(4096.0), new_id(4096.0004), new_id(4095.0), new_id(4097.0), new_id(4097.0)]
    assert all(re.fullmatch(r"ex_[0-9a-f]{26}", i) for i in ids)
    # 4,096,000 ms = 0x3e8000; 4,097,000 = 0x3e83e8.
    assert [i[3:21] for i in ids] == ["0000003e8000000000", "0000003e8000000001",
                                      "0000003e8000000002", "0000003e83e8000000",
                                      "0000003e83e8000001"]
    assert ids == sorted(ids) and len(set(ids)) == 5
