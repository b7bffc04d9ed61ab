"""`runhook.integrations.wandb.forward()` with artifacts: a real offline `wandb.init`
logs an artifact with an alias and a tag, and the daemon's automations fire as if W&B
had seen it; the link W&B refuses offline is not reported. The event builders, pure."""

from __future__ import annotations

import pytest
from conftest import eventually
from test_integrations import needs, trained
from training import automations, history

from runhook.integrations import wandb_events

WANDB_ARTIFACT = """
import sys, wandb
from runhook.integrations.wandb import forward

forward()
run = wandb.init(mode="offline", project="vision", id="wb-art", name="prod-wb")
open("weights.txt", "w").write("w")
for epoch in range(2):
    art = wandb.Artifact("resnet", type="model", metadata={"acc": 0.9 + epoch / 100})
    art.add_file("weights.txt")
    run.log_artifact(art, aliases=["production"] if epoch else ["candidate"], tags=["t1"])
try:
    run.link_artifact(art, "wandb-registry-model/resnet", aliases=["staging"])
except NotImplementedError:
    print("link refused offline")
run.finish()
"""

REGISTRY_LINK = """
[[automations]]
name = "linked"
scope = "registry:acme/model"
event = { kind = "LINK_ARTIFACT" }
action = { kind = "none" }
"""


async def test_logged_artifacts_fire_created_alias_and_tag(start_daemon, short_dir):
    needs("wandb")
    body = automations(
        ("created", '{ kind = "CREATE_ARTIFACT", collection = "^resnet$" }'),
        ("prod", '{ kind = "ADD_ARTIFACT_ALIAS", alias = "^production$" }'),
        ("tagged", '{ kind = "ADD_ARTIFACT_TAG", tag = "^t1$" }'),
        ("done", '{ kind = "RUN_STATE", states = ["finished"] }')) + REGISTRY_LINK
    daemon = await start_daemon(body)
    env = {"WANDB_DIR": str(short_dir), "WANDB_SILENT": "true", "WANDB_MODE": "offline"}
    code, out, err = await trained(daemon, WANDB_ARTIFACT, env=env)
    assert code == 0, err
    assert "link refused offline" in out
    # The run's end is sent after its artifacts: once it is in, they are too.
    await eventually(lambda: history(daemon, "done"), lambda rows: len(rows) == 1)
    created = await history(daemon, "created")
    # Two versions logged: offline W&B gives no version number, the run counts them.
    assert [r["context"]["artifact_version"] for r in created] == \
        ["acme/vision/resnet:v0", "acme/vision/resnet:v1"]
    assert created[1]["context"]["artifact_metadata"] == {"acc": pytest.approx(0.91)}
    (prod,) = await history(daemon, "prod")  # "candidate" was the first version's
    assert prod["context"]["artifact_version_string"] == "acme/vision/resnet:production"
    assert len(await history(daemon, "tagged")) == 2
    assert await history(daemon, "linked") == []  # W&B did not link it: nothing said


def test_link_targets_name_a_registry_or_a_project():
    into_registry = wandb_events.linked("acme", "vision", "wandb-registry-model/resnet:v1", 2,
                                        "model", ["latest", "prod"], "vision/resnet", "ana")
    assert into_registry == {
        "type": "artifact.linked", "entity": "acme", "registry": "model",
        "collection": "resnet", "version": 2, "author": "ana", "aliases": ["prod"],
        "source": "vision/resnet", "artifact_type": "model"}
    elsewhere = wandb_events.linked("acme", "vision", "other/nlp/best", 0, None, None, "", "")
    assert (elsewhere["entity"], elsewhere["project"], elsewhere["collection"]) == \
        ("other", "nlp", "best")
    assert wandb_events.linked("acme", "vision", "best", 0, None, None, "", "")["project"] \
        == "vision"
    assert wandb_events.version_index("v12") == 12
    assert wandb_events.version_index(None) is None
    event = wandb_events.created("acme", "vision", "resnet:v0", 0, None, ["latest"], None,
                                 {"ok": 1, "bad": object(), "nan": float("nan")}, "ana")
    assert (event["aliases"], event["metadata"]) == ([], {"ok": 1})
