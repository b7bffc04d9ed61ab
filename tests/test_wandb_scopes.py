"""W&B's wider scopes (docs/wandb.md): run kinds at `entity:` scope (every project of the
entity, each project's runs in its own actor) and `org:NAME` scopes over listed entities;
the loading checked directly, the firings through the real daemon, restarts included."""

from __future__ import annotations

import asyncio
import signal
import time

import pytest
from conftest import eventually

from runhook.config.diagnose import check
from runhook.config.model import ConfigError, decode
from runhook.config.settings import build

ORGS = """
[orgs.lab]
entities = ["acme", "beta"]
"""


def automation(name: str, scope: str, event: str, extra: str = "") -> str:
    return f"""
[[automations]]
name = "{name}"
scope = "{scope}"
event = {event}
action = {{ kind = "none" }}
{extra}
"""


STATE = '{ kind = "RUN_STATE", states = ["failed"] }'
LOSS = '{ kind = "RUN_METRIC_THRESHOLD", metric = "loss", cmp = ">", threshold = 1 }'
CREATED = '{ kind = "CREATE_ARTIFACT" }'


def test_org_and_entity_automations_spread_to_the_actors_that_hold_them():
    settings = build(decode(ORGS
                            + automation("own", "project:acme/vision", LOSS)
                            + automation("entity-state", "entity:acme", STATE)
                            + automation("org-loss", "org:lab", LOSS)
                            + automation("org-created", "org:lab", CREATED)
                            + automation("entity-created", "entity:beta", CREATED)))
    names = lambda key: [a.name for a in settings.automations_of(key)]
    # a configured project: its own, its entity's and its org's run kinds, file order
    assert names("project:acme/vision") == ["own", "entity-state", "org-loss"]
    # a project no automation names: the entity-wide run kinds alone
    assert names("project:acme/nlp") == ["entity-state", "org-loss"]
    assert names("project:beta/nlp") == ["org-loss"]
    # artifact kinds of an org are at each listed entity's scope; run kinds are not
    assert names("entity:acme") == ["org-created"]
    assert names("entity:beta") == ["org-created", "entity-created"]
    assert [settings.covers(k) for k in ("project:acme/x", "project:beta/x",
                                         "project:zeta/x", "entity:zeta", "org:lab",
                                         "registry:acme/model")] == \
        [True, True, False, False, False, False]


@pytest.mark.parametrize("text, expected", [
    (automation("a", "org:lab", STATE),
     ("automations[0].scope: org 'lab' is not declared: add [orgs.lab] with entities = [...] "
     "(declared orgs: none) (automation 'a')")),
    ('[orgs.lab]\nentities = []\n' + automation("a", "org:lab", STATE),
     ("orgs.lab.entities: empty; list the entities an automation at org:lab covers, e.g. "
     'entities = ["acme", "acme-research"]')),
    ('[orgs.lab]\nentities = ["acme", "beta", "acme"]\n',
     "orgs.lab.entities[2]: 'acme' is listed twice"),
    ('[orgs.lab]\nentities = ["acme/vision"]\n',
     "orgs.lab.entities[0]: 'acme/vision' is not an entity name (no '/', ':' or spaces)"),
    (automation("a", "org:", STATE),
     ("automations[0].scope: expected 'project:ENTITY/PROJECT', 'registry:ENTITY/REGISTRY', "
     "'entity:ENTITY' or 'org:NAME', got 'org:' (automation 'a')")),
    (ORGS + automation("a", "org:lab", '{ kind = "GROUP_FINISHED" }'),
     "automations[0].event.kind: GROUP_FINISHED cannot happen in an org scope (org:lab)"),
])
def test_org_scope_refusals(text, expected):
    with pytest.raises(ConfigError) as caught:
        build(decode(text))
    assert caught.value.problems[0].startswith(expected), caught.value.problems


def test_check_config_names_an_unknown_field_of_an_org():
    assert check(b'[orgs.lab]\nentities = ["acme"]\nentity = ["beta"]\n', "f.toml") == [
        "orgs.lab: object contains unknown field `entity`; did you mean 'entities'?"]


# --- through the daemon -----------------------------------------------------------

def run_event(kind: str, entity: str, project: str, run_id: str, **fields) -> dict:
    return {"type": kind, "entity": entity, "project": project, "run_id": run_id, **fields}


async def history(daemon, automation: str) -> list[dict]:
    async with daemon.client() as client:
        answer = await client.request({"type": "query.history", "automation": automation,
                                       "limit": 100})
    return list(reversed(answer["executions"]))


async def test_entity_and_org_run_kinds_fire_per_project(start_daemon):
    daemon = await start_daemon(ORGS + automation("entity-state", "entity:acme", STATE)
                                + automation("org-loss", "org:lab", LOSS)
                                + automation("org-created", "org:lab", CREATED))
    created = {"type": "artifact.created", "collection": "resnet", "version": 0,
               "artifact_type": "model"}
    async with daemon.client() as client:
        for line in [
            # loss above 1 in beta (in the org): fires; again above: no new crossing
            run_event("run.metrics", "beta", "nlp", "r1", values={"loss": 2.0}, id="e1"),
            run_event("run.metrics", "beta", "nlp", "r1", values={"loss": 3.0}, id="e2"),
            # zeta is in no org: nothing
            run_event("run.metrics", "zeta", "x", "r1", values={"loss": 2.0}, id="e3"),
            # the same run id in two projects of acme: two runs, each fails once
            run_event("run.state", "acme", "vision", "r1", state="running", id="e4"),
            run_event("run.state", "acme", "vision", "r1", state="failed", id="e5"),
            run_event("run.state", "acme", "audio", "r1", state="failed", id="e6"),
            # beta's runs are not acme's entity-wide automation's
            run_event("run.state", "beta", "nlp", "r1", state="failed", id="e7"),
            {**created, "entity": "beta", "project": "nlp", "id": "e8"},
            {**created, "entity": "acme", "registry": "model", "id": "e9"},
            {**created, "entity": "zeta", "project": "x", "id": "e10"},
        ]:
            assert await client.send(line) == {"ok": True}, line
    assert [(r["event_id"], r["scope"], r["run_id"]) for r in
            await history(daemon, "org-loss")] == [("e1", "project:beta/nlp", "r1")]
    assert [(r["event_id"], r["scope"]) for r in await history(daemon, "entity-state")] == \
        [("e5", "project:acme/vision"), ("e6", "project:acme/audio")]
    assert [(r["event_id"], r["scope"]) for r in await history(daemon, "org-created")] == \
        [("e8", "entity:beta"), ("e9", "entity:acme")]


async def test_an_entity_wide_cooldown_survives_kill_9_per_project(start_daemon):
    config = automation("loss", "entity:acme", LOSS, 'cooldown = "1h"')
    daemon = await start_daemon(config)
    async with daemon.client() as client:
        assert await client.send(run_event("run.metrics", "acme", "vision", "r1",
                                           values={"loss": 5.0}, id="m1")) == {"ok": True}
    assert await daemon.stop(signal.SIGKILL) == -signal.SIGKILL
    daemon = await start_daemon(config=daemon.config)
    async with daemon.client() as client:
        for i, project, loss in [(2, "vision", 0.5), (3, "vision", 5.0), (4, "audio", 5.0)]:
            assert await client.send(run_event("run.metrics", "acme", project, "r1",
                                               values={"loss": loss}, id=f"m{i}")) == \
                {"ok": True}
    # the crossing in vision again within the hour: SKIPPED; audio's run is another run
    assert [(r["event_id"], r["state"]) for r in await history(daemon, "loss")] == \
        [("m1", "FINISHED"), ("m3", "SKIPPED"), ("m4", "FINISHED")]


async def test_a_project_only_an_entity_covers_counts_its_crash_after_kill_9(start_daemon):
    """The project has no automation of its own: its actor is created on its first
    event, and after a restart from the runs stored, with no event needed."""
    config = ('heartbeat_timeout = "1s"\nclient_heartbeat = "100ms"\n'
              + automation("crashed", "entity:acme", STATE))
    daemon = await start_daemon(config)
    async with daemon.client() as client:
        assert await client.send(run_event("run.state", "acme", "vision", "r1",
                                           state="running", run_name="prod-1")) == {"ok": True}
    assert await daemon.stop(signal.SIGKILL) == -signal.SIGKILL
    daemon = await start_daemon(config=daemon.config)
    started = time.time()
    (row,) = await eventually(lambda: history(daemon, "crashed"), lambda rows: len(rows) == 1)
    assert (row["scope"], row["run_id"]) == ("project:acme/vision", "r1")
    assert row["created_at"] - started >= 0.8  # the deadline counts from the start
    await asyncio.sleep(1.2)  # another timeout's worth: still one
    assert len(await history(daemon, "crashed")) == 1
