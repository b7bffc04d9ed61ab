"""`runhook.training.wandb.forward()` with artifacts: a real offline `wandb.init`
logs an artifact with an alias and a tag, and the daemon's automations fire as if W&B
had seen it; the link W&B refuses offline is not reported. The event builders, pure."""

from __future__ import annotations

import pytest
from conftest import eventually
from test_integrations import needs, trained
from training import automations, history

from runhook.training import wandb_events

WANDB_ARTIFACT = """
import os, sys, wandb
from runhook.training.wandb import forward

forward()
run = wandb.init(mode="offline", project="vision", id="wb-art", name="prod-wb")
weights = os.path.join(os.environ["WANDB_DIR"], "weights.txt")  # not in the cwd: the clone
open(weights, "w").write("w")
for epoch in range(2):
    art = wandb.Artifact("resnet", type="model", metadata={"acc": 0.9 + epoch / 100})
    art.add_file(weights)
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


WANDB_SYSTEM = """
import sys, time, wandb
from runhook.training.wandb import forward

forward(system_metrics=sys.argv[1] == "on", system_interval=3600)
run = wandb.init(mode="offline", project="vision", id="wb-sys-" + sys.argv[1],
                 settings=wandb.Settings(x_stats_sampling_interval=0.2))
deadline = time.monotonic() + 60
# wandb-core samples on its own schedule: wait until it has (or, off, for a sample's
# worth of time), then end the run; the run's end forwards what was sampled.
while time.monotonic() < deadline and "proc.cpu.threads" not in (run._system_metrics or {}):
    time.sleep(0.1)
print("sampled" if "proc.cpu.threads" in (run._system_metrics or {}) else "none")
run.finish()
"""


@pytest.mark.parametrize("switch", ["on", "off"])
async def test_system_metrics_are_forwarded_only_when_asked(start_daemon, short_dir, switch):
    needs("wandb")
    threads = '{ kind = "RUN_METRIC_THRESHOLD", metric = "system/proc.cpu.threads", ' \
              'cmp = ">=", threshold = 1 }'
    daemon = await start_daemon(automations(
        ("threads", threads), ("done", '{ kind = "RUN_STATE", states = ["finished"] }')))
    env = {"WANDB_DIR": str(short_dir), "WANDB_SILENT": "true", "WANDB_MODE": "offline"}
    if switch == "off":  # wandb-core buffers samples, but forward() was not asked
        env["WANDB_X_STATS_BUFFER_SIZE"] = "100"
    code, out, err = await trained(daemon, WANDB_SYSTEM, switch, env=env)
    assert code == 0, err
    assert out.strip() == "sampled"
    await eventually(lambda: history(daemon, "done"), lambda rows: len(rows) == 1)
    fired = await history(daemon, "threads")
    # A crossing: the thread count is >= 1 from the first sample on, so it fires once.
    assert len(fired) == (1 if switch == "on" else 0)
    if fired:
        assert fired[0]["context"]["metric_values"][0] >= 1
