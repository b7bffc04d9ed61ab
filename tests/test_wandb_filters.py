"""W&B's filters (docs/wandb.md): `alias` on LINK_ARTIFACT, the collection-tag kinds, run
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


# --- cooldown on artifact kinds -------------------------------------------------

def _cooldown_evaluator(cooldown: str | None):
    from runhook.config.model import decode
    from runhook.config.settings import build
    from runhook.evaluate.evaluator import Evaluator
    line = "" if cooldown is None else f'cooldown = "{cooldown}"'
    settings = build(decode(f"""
[[automations]]
name = "a"
scope = "entity:acme"
event = {{ kind = "ADD_ARTIFACT_ALIAS" }}
action = {{ kind = "none" }}
{line}
"""))
    return Evaluator("entity:acme", settings.automations), settings.automations[0]


def _alias(collection: str):
    from runhook.core.events import AliasAdded
    return AliasAdded(entity="acme", registry="model", collection=collection, version=1,
                      alias="production")


def test_artifact_cooldown_is_per_collection():
    evaluator, _ = _cooldown_evaluator("1h")
    # (collection, now) -> state: resnet at 0 fires; resnet at 10 s is inside the hour;
    # bert at 20 s is another collection and fires; resnet at 3600 s is past the hour
    seen = []
    for collection, now in (("resnet", 0.0), ("resnet", 10.0), ("bert", 20.0),
                            ("resnet", 3600.0)):
        rows = evaluator.evaluate(_alias(collection), now, now).rows
        seen.append((collection, rows[0][8], rows[0][9]))
    assert seen == [
        ("resnet", "FINISHED", "recorded only (action kind = none)"),
        ("resnet", "SKIPPED", ("cooldown: fired for collection 'resnet' less than 1h ago "
                              "(59m50s left)")),
        ("bert", "FINISHED", "recorded only (action kind = none)"),
        ("resnet", "FINISHED", "recorded only (action kind = none)")]


def test_artifact_cooldown_defaults_to_none_and_run_kinds_keep_a_day():
    evaluator, automation = _cooldown_evaluator(None)
    assert automation.cooldown == 0.0
    states = [evaluator.evaluate(_alias("resnet"), t, t).rows[0][8] for t in (0.0, 1.0)]
    assert states == ["FINISHED", "FINISHED"]
    from runhook.config.model import decode
    from runhook.config.settings import build
    run = build(decode("""
[[automations]]
name = "r"
scope = "project:acme/vision"
event = { kind = "RUN_STATE", states = ["failed"] }
action = { kind = "none" }
""")).automations[0]
    assert run.cooldown == 86400.0


def _state(cooldowns: list) -> dict:
    empty = ("runs", "windows", "log", "batches", "flags", "groups", "digest_windows",
             "digest_items")
    return {**{key: [] for key in empty}, "cooldowns": cooldowns}


def test_artifact_cooldown_is_restored_from_what_was_committed():
    evaluator, automation = _cooldown_evaluator("1h")
    caused = evaluator.evaluate(_alias("resnet"), 0.0, 0.0)
    [(_sql, rows)] = [s for s in caused.statements if "artifact_cooldowns" in s[0]]
    assert rows == [("entity:acme", "a", "resnet", automation.digest, 0.0)]
    fresh, _ = _cooldown_evaluator("1h")
    fresh.restore(_state([row[1:] for row in rows]), 5.0)
    assert fresh.evaluate(_alias("resnet"), 5.0, 5.0).rows[0][8] == "SKIPPED"
    # a changed definition (another digest) starts without a cooldown
    changed, _ = _cooldown_evaluator("2h")
    changed.restore(_state([row[1:] for row in rows]), 5.0)
    assert changed.evaluate(_alias("resnet"), 5.0, 5.0).rows[0][8] == "FINISHED"
