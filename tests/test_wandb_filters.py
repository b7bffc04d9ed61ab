"""W&B's filters (DESIGN §14): `alias` on LINK_ARTIFACT, the collection-tag kinds, run
kinds at `entity:` scope and the `org:` scope; evaluated directly and through the daemon."""

from __future__ import annotations

import json

import pytest
from test_artifact_triggers import fires

from runhook.core.events import ArtifactLinked, CollectionTagAdded, CollectionTagRemoved, TagAdded
from runhook.ingest.protocol import decode as decode_line


def linked(aliases: list[str]) -> ArtifactLinked:
    return ArtifactLinked(entity="acme", registry="model", collection="c", version=1,
                          aliases=aliases)


@pytest.mark.parametrize("table, event, expected", [
    # SDK's OnLinkArtifact(filter=ArtifactEvent.alias.eq("prod")): any alias the linked
    # version carries matches; the link fires once, however many match.
    ('{ kind = "LINK_ARTIFACT", alias = "^prod$" }', linked(["latest", "prod"]),
     ["LINK_ARTIFACT"]),
    ('{ kind = "LINK_ARTIFACT", alias = "^prod$" }', linked(["prod", "prod-2"]),
     ["LINK_ARTIFACT"]),
    ('{ kind = "LINK_ARTIFACT", alias = "^prod$" }', linked(["production"]), []),
    ('{ kind = "LINK_ARTIFACT", alias = "^prod$" }', linked([]), []),
    ('{ kind = "LINK_ARTIFACT" }', linked([]), ["LINK_ARTIFACT"]),
    # W&B's stored spelling with the filter
    ('{ kind = "LINK_MODEL", alias = "prod" }', linked(["preprod"]), ["LINK_ARTIFACT"]),
])
def test_alias_filter_on_link(table, event, expected):
    assert fires(table, event, scope="registry:acme/model") == expected


def _tag(cls, tag: str, **where):
    return cls(**(where or {"entity": "acme", "registry": "model"}), collection="resnet",
               tag=tag, author="ana")


@pytest.mark.parametrize("table, event, expected", [
    ('{ kind = "ADD_COLLECTION_TAG" }', _tag(CollectionTagAdded, "approved"),
     ["ADD_COLLECTION_TAG"]),
    ('{ kind = "ADD_COLLECTION_TAG", tag = "^appr" }', _tag(CollectionTagAdded, "approved"),
     ["ADD_COLLECTION_TAG"]),
    ('{ kind = "ADD_COLLECTION_TAG", tag = "^appr" }', _tag(CollectionTagAdded, "unapproved"),
     []),
    ('{ kind = "ADD_COLLECTION_TAG", collection = "^bert" }',
     _tag(CollectionTagAdded, "approved"), []),
    ('{ kind = "ADD_COLLECTION_TAG" }', _tag(CollectionTagRemoved, "approved"), []),
    ('{ kind = "REMOVE_COLLECTION_TAG" }', _tag(CollectionTagRemoved, "approved"),
     ["REMOVE_COLLECTION_TAG"]),
    # a version's tag is not the collection's, and the other way round
    ('{ kind = "ADD_COLLECTION_TAG" }',
     TagAdded(entity="acme", registry="model", collection="resnet", version=1, tag="t"), []),
    ('{ kind = "ADD_ARTIFACT_TAG" }', _tag(CollectionTagAdded, "approved"), []),
])
def test_collection_tag_kinds(table, event, expected):
    assert fires(table, event, scope="registry:acme/model") == expected


def test_collection_tag_in_a_project_and_its_variables():
    from runhook.config.model import decode
    from runhook.config.settings import build
    from runhook.evaluate.evaluator import Evaluator
    settings = build(decode("""
[[automations]]
name = "tagged"
scope = "project:acme/vision"
event = { kind = "ADD_COLLECTION_TAG" }
action = { kind = "none" }
"""))
    event = _tag(CollectionTagAdded, "approved", entity="acme", project="vision")
    rows = Evaluator("project:acme/vision", settings.automations).evaluate(
        event, 1767225600.0, 0.0).rows
    context = json.loads(rows[0][10])
    assert context == {
        "event_type": "ADD_COLLECTION_TAG", "event_author": "ana", "entity_name": "acme",
        "project_name": "vision", "automation_name": "tagged", "execution_id": rows[0][0],
        "event_time": "2026-01-01T00:00:00.000Z", "artifact_collection_name": "resnet",
        "tag": "approved"}


def test_collection_tag_events_on_the_wire():
    line = (b'{"type":"collection.tag_added","entity":"acme","registry":"model",'
            b'"collection":"resnet","tag":"approved","author":"ana"}')
    assert decode_line(line) == _tag(CollectionTagAdded, "approved")
    removed = line.replace(b"tag_added", b"tag_removed")
    assert decode_line(removed) == _tag(CollectionTagRemoved, "approved")
