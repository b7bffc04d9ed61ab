"""`${artifact_metadata.KEY}` on every artifact kind (docs/wandb.md): a creation's metadata
is kept per version, bounded, and renders on the version's later link, alias and tag
events; through the real daemon across kill -9 restarts."""

from __future__ import annotations

import json
import signal
import sqlite3

from conftest import settled, webhook_config

from runhook.core.events import AliasAdded, ArtifactCreated, ArtifactLinked, TagAdded
from runhook.evaluate.metadata import Remembered
from runhook.store.statements import FORGET_METADATA, UPSERT_METADATA


def created(version: int, metadata: dict, entity: str = "acme") -> ArtifactCreated:
    return ArtifactCreated(entity=entity, project="vision", collection="resnet",
                           version=version, metadata=metadata)


def test_kept_per_version_oldest_forgotten_first_and_linked_versions_follow_their_source():
    memory = Remembered(cap=2, max_bytes=64)
    memory.keep(frozenset({"acme"}))
    statements: list = []
    for version in (1, 2):
        assert memory.note("entity:acme", created(version, {"acc": version / 10}),
                           statements) is None  # a creation renders its own
    assert statements == [
        (UPSERT_METADATA, [("entity:acme", "acme/vision/resnet:v1", '{"acc":0.1}')]),
        (UPSERT_METADATA, [("entity:acme", "acme/vision/resnet:v2", '{"acc":0.2}')])]
    # a link of v2 into a registry: rendered from its source, kept under its own name
    statements = []
    link = ArtifactLinked(entity="acme", registry="model", collection="prod", version=0,
                          source="acme/vision/resnet:v2")
    assert memory.note("entity:acme", link, statements) == {"acc": 0.2}
    # three kept past a cap of two: v1, the oldest, is forgotten in the same commit
    assert statements == [
        (UPSERT_METADATA, [("entity:acme", "acme/model/prod:v0", '{"acc":0.2}')]),
        (FORGET_METADATA, [("entity:acme", "acme/vision/resnet:v1")])]
    alias = AliasAdded(entity="acme", registry="model", collection="prod", version=0,
                       alias="production")
    tag = TagAdded(entity="acme", project="vision", collection="resnet", version=1, tag="t")
    assert memory.note("registry:acme/model", alias, []) == {"acc": 0.2}
    assert memory.note("project:acme/vision", tag, []) is None
    # over max_bytes (64) as JSON: rendered on its creation, not kept
    statements = []
    memory.note("entity:acme", created(3, {"notes": "x" * 64}), statements)
    assert statements == []
    # only a keeper writes, and only for a kept entity
    memory.note("project:acme/vision", created(4, {"acc": 1}), statements)
    memory.note("entity:beta", created(4, {"acc": 1}, entity="beta"), statements)
    assert statements == []


PAYLOAD = '{"kind": "${event_type}", "acc": "${artifact_metadata.accuracy}"}'


def automation(name: str, scope: str, kind: str) -> str:
    payload = PAYLOAD
    return f"""
[[automations]]
name = "{name}"
scope = "{scope}"
event = {{ kind = "{kind}" }}
action = {{ integration = "ci", payload = '{payload}' }}
"""


async def test_later_events_of_a_version_render_its_metadata_across_restarts(
        start_daemon, receiver):
    # No automation where the version is created: only where it is linked and tagged.
    config = (webhook_config(receiver.url, PAYLOAD, event='{ kind = "LINK_ARTIFACT" }')
              + automation("alias", "registry:acme/model", "ADD_ARTIFACT_ALIAS")
              + automation("tagged", "project:acme/vision", "ADD_ARTIFACT_TAG"))
    base = {"entity": "acme", "author": "ana"}
    daemon = await start_daemon(config)
    async with daemon.client() as client:
        assert await client.send({**base, "type": "artifact.created", "project": "vision",
                                  "collection": "resnet", "version": 3,
                                  "metadata": {"accuracy": 0.91, "epochs": 10}}) == {"ok": True}
    assert await daemon.stop(signal.SIGKILL) == -signal.SIGKILL  # the ok means committed

    daemon = await start_daemon(config=daemon.config)
    async with daemon.client() as client:
        assert await client.send({**base, "type": "artifact.linked", "registry": "model",
                                  "collection": "resnet-prod", "version": 0,
                                  "source": "acme/vision/resnet:v3"}) == {"ok": True}
    request = await receiver.next()
    assert json.loads(request.body) == {"kind": "LINK_ARTIFACT", "acc": 0.91}
    await settled(daemon, request.headers["webhook-id"])
    assert await daemon.stop(signal.SIGKILL) == -signal.SIGKILL

    daemon = await start_daemon(config=daemon.config)
    async with daemon.client() as client:
        # the registry's version, kept at its link; the project's, kept at its creation
        assert await client.send({**base, "type": "artifact.alias_added", "registry": "model",
                                  "collection": "resnet-prod", "version": 0,
                                  "alias": "production"}) == {"ok": True}
        assert await client.send({**base, "type": "artifact.tag_added", "project": "vision",
                                  "collection": "resnet", "version": 3,
                                  "tag": "approved"}) == {"ok": True}
        # another version: nothing kept for it, renders empty
        assert await client.send({**base, "type": "artifact.tag_added", "project": "vision",
                                  "collection": "resnet", "version": 4,
                                  "tag": "approved"}) == {"ok": True}
    bodies = sorted([json.loads((await receiver.next()).body) for _ in range(3)],
                    key=lambda b: (b["kind"], str(b["acc"])))
    assert bodies == [{"kind": "ADD_ARTIFACT_ALIAS", "acc": 0.91},
                      {"kind": "ADD_ARTIFACT_TAG", "acc": ""},
                      {"kind": "ADD_ARTIFACT_TAG", "acc": 0.91}]
    await daemon.stop()
    with sqlite3.connect(daemon.database) as db:
        assert db.execute("SELECT scope, version, metadata FROM artifact_metadata "
                          "ORDER BY rowid").fetchall() == [
            ("entity:acme", "acme/vision/resnet:v3", '{"accuracy":0.91,"epochs":10}'),
            ("entity:acme", "acme/model/resnet-prod:v0", '{"accuracy":0.91,"epochs":10}')]
