"""Artifact kinds, their filters and scopes, evaluated directly (no I/O)."""

from __future__ import annotations

import pytest

from runhook.config.model import decode
from runhook.config.settings import build
from runhook.core.events import (
    AliasAdded,
    ArtifactCreated,
    ArtifactLinked,
    ArtifactUnlinked,
    TagAdded,
    TagRemoved,
)
from runhook.core.scopes import scope_keys
from runhook.evaluate.evaluator import Evaluator
from runhook.triggers.artifact import Occurrence, occurrences


def created(**kw):
    base = {"entity": "acme", "project": "vision", "collection": "resnet", "version": 3,
            "artifact_type": "model", "author": "ana"}
    return ArtifactCreated(**{**base, **kw})


def fires(event_table: str, event, scope: str = "project:acme/vision") -> list[str]:
    """The event kinds of the executions one automation produces for `event`."""
    settings = build(decode(f"""
[[automations]]
name = "a"
scope = "{scope}"
event = {event_table}
action = {{ kind = "none" }}
"""))
    caused = Evaluator(scope, settings.automations).evaluate(event, 0.0, 0.0)
    assert caused.jobs == []  # kind = "none" never goes to delivery
    assert caused.statements == []  # no id, no run: nothing but the executions
    return [row[3] for row in caused.rows]


def test_created_expands_into_alias_and_tag_kinds():
    event = created(aliases=["latest", "best"], tags=["cv"])
    assert occurrences(event) == [Occurrence("CREATE_ARTIFACT"),
                                  Occurrence("ADD_ARTIFACT_ALIAS", alias="latest"),
                                  Occurrence("ADD_ARTIFACT_ALIAS", alias="best"),
                                  Occurrence("ADD_ARTIFACT_TAG", tag="cv")]


def test_linked_expands_into_alias_kinds():
    event = ArtifactLinked(entity="acme", registry="model", collection="c", version=1,
                           aliases=["production"])
    assert occurrences(event) == [Occurrence("LINK_ARTIFACT"),
                                  Occurrence("ADD_ARTIFACT_ALIAS", alias="production")]


@pytest.mark.parametrize("table, event, expected", [
    ('{ kind = "CREATE_ARTIFACT" }', created(), ["CREATE_ARTIFACT"]),
    ('{ kind = "CREATE_ARTIFACT", collection = "^res" }', created(), ["CREATE_ARTIFACT"]),
    ('{ kind = "CREATE_ARTIFACT", collection = "net" }', created(), ["CREATE_ARTIFACT"]),
    ('{ kind = "CREATE_ARTIFACT", collection = "^net" }', created(), []),
    ('{ kind = "CREATE_ARTIFACT", artifact_type = "model" }', created(), ["CREATE_ARTIFACT"]),
    ('{ kind = "CREATE_ARTIFACT", artifact_type = "mod" }', created(), []),
    ('{ kind = "CREATE_ARTIFACT", artifact_type = "model" }', created(artifact_type=None), []),
    ('{ kind = "ADD_ARTIFACT_ALIAS" }', created(aliases=["a", "b"]),
     ["ADD_ARTIFACT_ALIAS", "ADD_ARTIFACT_ALIAS"]),
    ('{ kind = "ADD_ARTIFACT_ALIAS", alias = "^production$" }',
     created(aliases=["production-candidate", "production"]), ["ADD_ARTIFACT_ALIAS"]),
    ('{ kind = "ADD_ARTIFACT_ALIAS", alias = "^production$" }',
     created(aliases=["production-candidate"]), []),
    ('{ kind = "ADD_ARTIFACT_ALIAS", alias = "prod" }',
     AliasAdded(entity="acme", project="vision", collection="c", version=1, alias="preprod"),
     ["ADD_ARTIFACT_ALIAS"]),
    ('{ kind = "ADD_ARTIFACT_TAG", tag = "^cv$" }', created(tags=["nlp", "cv"]),
     ["ADD_ARTIFACT_TAG"]),
    ('{ kind = "ADD_ARTIFACT_TAG", tag = "^cv$" }',
     TagAdded(entity="acme", project="vision", collection="c", version=1, tag="cvx"), []),
    ('{ kind = "REMOVE_ARTIFACT_TAG", tag = "cv" }',
     TagRemoved(entity="acme", project="vision", collection="c", version=1, tag="cv"),
     ["REMOVE_ARTIFACT_TAG"]),
    ('{ kind = "ADD_ARTIFACT_TAG" }',
     TagRemoved(entity="acme", project="vision", collection="c", version=1, tag="cv"), []),
    ('{ kind = "CREATE_ARTIFACT" }', created(aliases=["x"], tags=["y"]), ["CREATE_ARTIFACT"]),
])
def test_project_scope_filters(table, event, expected):
    assert fires(table, event) == expected


@pytest.mark.parametrize("table, event, expected", [
    ('{ kind = "LINK_ARTIFACT" }',
     ArtifactLinked(entity="acme", registry="model", collection="c", version=1),
     ["LINK_ARTIFACT"]),
    ('{ kind = "LINK_ARTIFACT", collection = "^other$" }',
     ArtifactLinked(entity="acme", registry="model", collection="c", version=1), []),
    ('{ kind = "UNLINK_ARTIFACT" }',
     ArtifactUnlinked(entity="acme", registry="model", collection="c", version=1),
     ["UNLINK_ARTIFACT"]),
    ('{ kind = "ADD_ARTIFACT_ALIAS", alias = "^production$" }',
     ArtifactLinked(entity="acme", registry="model", collection="c", version=1,
                    aliases=["production"]), ["ADD_ARTIFACT_ALIAS"]),
])
def test_registry_scope_kinds(table, event, expected):
    assert fires(table, event, scope="registry:acme/model") == expected


def test_disabled_automation_is_silent():
    settings = build(decode("""
[[automations]]
name = "off"
scope = "project:acme/vision"
event = { kind = "CREATE_ARTIFACT" }
action = { kind = "none" }
enabled = false
"""))
    evaluator = Evaluator("project:acme/vision", settings.automations)
    assert evaluator.evaluate(created(), 0.0, 0.0) == ([], [], [], False)


def test_scope_keys_cover_location_and_entity():
    assert scope_keys(created()) == ("project:acme/vision", "entity:acme")
    linked = ArtifactLinked(entity="acme", registry="model", collection="c", version=1)
    assert scope_keys(linked) == ("registry:acme/model", "entity:acme")


def test_context_uses_wandb_names():
    settings = build(decode("""
[[automations]]
name = "ctx"
scope = "entity:acme"
event = { kind = "ADD_ARTIFACT_ALIAS" }
action = { kind = "none" }
"""))
    evaluator = Evaluator("entity:acme", settings.automations)
    event = created(aliases=["best"], metadata={"acc": 0.9})
    rows = evaluator.evaluate(event, 1767225600.0, 0.0).rows
    import json
    context = json.loads(rows[0][10])
    assert context == {
        "event_type": "ADD_ARTIFACT_ALIAS", "event_author": "ana", "entity_name": "acme",
        "project_name": "vision", "automation_name": "ctx", "execution_id": rows[0][0],
        "event_time": "2026-01-01T00:00:00.000Z", "artifact_collection_name": "resnet",
        "artifact_version": "acme/vision/resnet:v3",
        "artifact_version_string": "acme/vision/resnet:best", "artifact_version_index": 3,
        "alias": "best", "artifact_metadata": {"acc": 0.9}}
