"""`runhook preview` prints the request an automation would send, secrets masked, and
sends nothing; `runhook test` warns of variables a test leaves empty."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import msgspec

from runhook.cli.explain import empty_in_test
from runhook.config.model import decode
from runhook.config.settings import build
from runhook.core.events import RunMetrics
from runhook.delivery import preview

TOKEN = "ghp_preview_token_123456"
CONFIG = """
[server]
socket = "{dir}/ev.sock"
database = "{dir}/r.db"

[secrets]
GH = {{ env = "PREVIEW_GH" }}
SIGNING = {{ env = "PREVIEW_SIGNING" }}

[integrations.ci]
kind = "webhook"
url = "https://api.example.com/dispatches"
access_token = "GH"
signing_secret = "SIGNING"
signature = "wandb"
secrets = ["GH"]

[[automations]]
name = "deploy"
scope = "registry:acme/model"
event = {{ kind = "ADD_ARTIFACT_ALIAS", alias = "^production$" }}
action = {{ integration = "ci", payload = '''{{"v": "${{artifact_version_string}}", "n": "${{artifact_version_index}}", "run": "${{run_name}}", "echo": "${{GH}}"}}''' }}
"""
EVENT = {"type": "artifact.alias_added", "entity": "acme", "registry": "model",
         "collection": "resnet", "version": 3, "alias": "production", "author": "al"}


def _preview(tmp_path, event: dict) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "c.toml"
    config.write_text(CONFIG.format(dir=tmp_path))
    env = {**os.environ, "PREVIEW_GH": TOKEN,
           "PREVIEW_SIGNING": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}
    return subprocess.run([sys.executable, "-m", "runhook", "preview", "deploy", "--config",
                           str(config), "--event", json.dumps(event)],
                          check=False, capture_output=True, text=True, env=env)


def test_preview_prints_the_request_with_secrets_masked(tmp_path):
    run = _preview(tmp_path, EVENT)
    assert run.returncode == 0, run.stderr
    head, _, body = run.stdout.partition("\n\n")
    lines = head.splitlines()
    assert lines[0] == "POST https://api.example.com/dispatches"
    headers = dict(line.split(": ", 1) for line in lines[1:])
    assert headers["Content-Type"] == "application/json"
    assert headers["Authorization"] == "Bearer [secret GH]"
    assert headers["webhook-id"].startswith("ex_")
    assert headers["webhook-timestamp"].isdigit()
    masked = "[HMAC-SHA256 with secret SIGNING, computed at send time]"
    assert headers["webhook-signature"] == masked
    assert headers["X-Wandb-Signature"] == masked
    # The alias replaces vN; a lone placeholder keeps its type; the secret is masked.
    assert body == ('{"v":"acme/model/resnet:production","n":3,"run":"",'
                    '"echo":"[secret GH]"}\n')
    assert TOKEN not in run.stdout + run.stderr
    assert run.stderr == "warning: renders empty: ${run_name}\n"


def test_preview_says_when_the_event_would_not_fire(tmp_path):
    run = _preview(tmp_path, {**EVENT, "alias": "staging"})
    assert run.returncode == 0
    assert "does not match the automation's ADD_ARTIFACT_ALIAS filters" in run.stderr
    run = _preview(tmp_path, {**EVENT, "registry": "other"})
    assert "the event is in registry:acme/other" in run.stderr


def test_preview_refuses_a_bad_event_and_an_unknown_automation(tmp_path):
    run = _preview(tmp_path, {**EVENT, "version": "three"})
    assert run.returncode == 2 and "--event" in run.stderr and run.stdout == ""


def test_test_warns_of_event_variables():
    assert empty_in_test('{"who": "${run_name}", "t": "${event_time}", "k": "${TOKEN}"}',
                         webhook=True) == [
        ("${run_name} will render empty: a test has no event, it sets only automation_name, "
        "event_time, event_type, execution_id")]
    assert empty_in_test("hello ${event_type}", webhook=False) == []
    assert empty_in_test(None, webhook=True) == []


FILTERED = """
[orgs.lab]
entities = ["acme", "beta"]

[[automations]]
name = "loss-diverged"
scope = "org:lab"
action = { kind = "none" }
[automations.event]
kind = "RUN_METRIC_THRESHOLD"
metric = "loss"
cmp = ">"
threshold = 10.0
run_name = "^prod-"
tags = ["nightly"]
"""
WOULD_NOT_FIRE = "it would not fire"


def test_preview_says_whether_it_fires_as_the_evaluator_decides():
    # The scope (org:lab lists acme) and the run filters are the evaluator's own
    # (Settings.evaluates, RunMatcher): preview's verdict is the daemon's.
    settings = build(decode(FILTERED))
    automation = settings.by_name["loss-diverged"]
    decoder = msgspec.json.Decoder(RunMetrics)

    def warnings(**fields: object) -> list[str]:
        event = decoder.decode(json.dumps({
            "type": "run.metrics", "entity": "acme", "project": "vision", "run_id": "r1",
            "run_name": "prod-7", "tags": ["nightly", "gpu"], "values": {"loss": 11.0},
            **fields}))
        return [w for w in preview.for_event(settings, automation, event, now=1e9).warnings
                if WOULD_NOT_FIRE in w]

    assert warnings() == []  # acme is in org:lab; prod-7 matches ^prod-; nightly is there
    assert warnings(entity="beta") == []  # the org's other entity
    outside = warnings(entity="zeta")  # an entity the org does not list
    assert outside == [("the event is in project:zeta/vision, the automation watches "
                       "org:lab: it would not fire")]
    for name in ("dev-9", ""):  # not matching, and missing (a run with no name yet)
        assert warnings(run_name=name) == [
            (f"the run (run_name {name!r}, user '', group None, tags ['nightly', 'gpu']) does "
            "not match the automation's run filters: it would not fire (an earlier event's "
            "name, user, group or tags, remembered by the daemon, would count)")]
    assert len(warnings(tags=["gpu"])) == 1  # the tag asked for is missing
