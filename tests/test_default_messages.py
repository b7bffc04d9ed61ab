"""A message action without title or text says what happened, as W&B's notification
does: per event kind, the title and text derived from the firing's variables, and where
each channel (Slack, Teams, Discord, email) puts them."""

from __future__ import annotations

import pytest

from runhook.delivery.channels import discord, email, slack, teams
from runhook.delivery.channels.common import render

BASE = {"entity_name": "acme", "execution_id": "ex_1", "event_time": "2026-11-27T10:00:00.000Z"}
RUN = {**BASE, "project_name": "vision", "run_id": "r1", "run_name": "prod-1",
       "run_url": "https://wandb.ai/acme/vision/runs/r1", "event_author": "ana",
       "run_status": "running"}
ART = {**BASE, "registry_name": "model", "artifact_collection_name": "resnet",
       "artifact_version": "acme/model/resnet:v3", "artifact_version_index": 3,
       "event_author": "bo"}

# (variables of the firing, the title, the text): each written out by hand.
FIXTURES = {
    "RUN_METRIC_THRESHOLD": (
        {**RUN, "automation_name": "loss-high", "event_type": "RUN_METRIC_THRESHOLD",
         "metric_name": "loss", "metric_values": [12.5, 13.0, 14.0],
         "metric_filter": "avg(loss) over last 3 > 10"},
        "Run prod-1: avg(loss) over last 3 > 10",
        ("Run: prod-1 (https://wandb.ai/acme/vision/runs/r1)\n"
        "Condition: avg(loss) over last 3 > 10\nValues seen: 12.5, 13, 14\nUser: ana\n"
        "Scope: acme/vision\nAutomation: loss-high")),
    "RUN_METRIC_CHANGE": (
        {**RUN, "automation_name": "acc-jump", "event_type": "RUN_METRIC_CHANGE",
         "metric_name": "acc", "metric_values": [0.55, 0.7],
         "metric_filter": "avg(acc) over last 1 rose by at least 0.1 vs the 1 before",
         "run_url": None},
        "Run prod-1: avg(acc) over last 1 rose by at least 0.1 vs the 1 before",
        ("Run: prod-1\nCondition: avg(acc) over last 1 rose by at least 0.1 vs the 1 before\n"
        "Values seen: 0.55, 0.7\nUser: ana\nScope: acme/vision\nAutomation: acc-jump")),
    "RUN_METRIC_ZSCORE": (
        {**RUN, "automation_name": "gn", "event_type": "RUN_METRIC_ZSCORE",
         "metric_name": "gn", "metric_values": [1.0, 2.0, 3.0, 10.0],
         "metric_filter": "z-score of gn ≥ 2 vs the last 3 values"},
        "Run prod-1: z-score of gn ≥ 2 vs the last 3 values",
        ("Run: prod-1 (https://wandb.ai/acme/vision/runs/r1)\n"
        "Condition: z-score of gn ≥ 2 vs the last 3 values\nValues seen: 1, 2, 3, 10\n"
        "User: ana\nScope: acme/vision\nAutomation: gn")),
    "RUN_STATE": (
        {**RUN, "automation_name": "failed", "event_type": "RUN_STATE", "run_status": "failed",
         "metric_filter": "run state becomes failed"},
        "Run prod-1 failed",
        ("Run: prod-1 (https://wandb.ai/acme/vision/runs/r1)\n"
        "Condition: run state becomes failed\nUser: ana\nScope: acme/vision\n"
        "Automation: failed")),
    "GROUP_FINISHED": (
        {**BASE, "project_name": "vision", "automation_name": "sweep", "event_type":
         "GROUP_FINISHED", "group": "sweep-7", "group_runs": 20, "group_finished": 17,
         "group_failed": 3, "group_best_run": "sweep-7-12", "group_best_value": 0.183,
         "metric_filter": "every run of the group ended"},
        "Group sweep-7 finished",
        ("Condition: every run of the group ended\nRuns: 20 (17 finished, 3 failed)\n"
        "Best: sweep-7-12 (0.183)\nScope: acme/vision\nAutomation: sweep")),
    "ADD_ARTIFACT_ALIAS": (
        {**ART, "automation_name": "deploy", "event_type": "ADD_ARTIFACT_ALIAS",
         "alias": "production", "artifact_version_string": "acme/model/resnet:production"},
        "Alias production added: acme/model/resnet:production",
        "Artifact: acme/model/resnet:v3\nBy: bo\nScope: acme/model\nAutomation: deploy"),
    "LINK_ARTIFACT": (
        {**ART, "automation_name": "linked", "event_type": "LINK_ARTIFACT",
         "artifact_version_string": "acme/model/resnet:v3"},
        "Artifact version linked: acme/model/resnet:v3",
        "Artifact: acme/model/resnet:v3\nBy: bo\nScope: acme/model\nAutomation: linked"),
    "CREATE_ARTIFACT": (
        {**ART, "registry_name": None, "project_name": "vision", "automation_name": "new",
         "event_type": "CREATE_ARTIFACT", "artifact_version": "acme/vision/ckpt:v0",
         "artifact_version_string": "acme/vision/ckpt:v0"},
        "New artifact version: acme/vision/ckpt:v0",
        "Artifact: acme/vision/ckpt:v0\nBy: bo\nScope: acme/vision\nAutomation: new"),
    "REMOVE_ARTIFACT_TAG": (
        {**ART, "automation_name": "untag", "event_type": "REMOVE_ARTIFACT_TAG",
         "tag": "approved", "artifact_version_string": "acme/model/resnet:v3"},
        "Tag approved removed: acme/model/resnet:v3",
        "Artifact: acme/model/resnet:v3\nBy: bo\nScope: acme/model\nAutomation: untag"),
}


@pytest.mark.parametrize("kind", sorted(FIXTURES))
def test_default_title_and_text_say_what_happened(kind):
    context, title, text = FIXTURES[kind]
    assert tuple(render(None, None, context)) == (title, text)


@pytest.mark.parametrize("kind", sorted(FIXTURES))
def test_each_channel_carries_the_default_message(kind):
    context, title, text = FIXTURES[kind]
    rendered = render(None, None, context)
    blocks = slack.message(*rendered, "INFO", context)["attachments"][0]["blocks"]
    assert blocks[0]["text"]["text"] == title and blocks[1]["text"]["text"] == text
    body = teams.card(*rendered, "INFO", context)["attachments"][0]["content"]["body"]
    assert body[0]["items"][0]["text"] == title and body[1]["text"] == text
    embed = discord.message(*rendered, "INFO", context)["embeds"][0]
    assert (embed["title"], embed["description"]) == (title, text)
    mail = email.message("runhook <r@acme.test>", ["ml@acme.test"], *rendered, context)
    assert mail["Subject"] == title
    assert mail.get_content().startswith(text + "\n\n")


def test_a_given_title_or_text_is_kept():
    context = FIXTURES["RUN_STATE"][0]
    from runhook.core.templates import Text
    title, text = render(Text("${run_name} down"), None, context)
    assert title == "prod-1 down" and text.startswith("Run: prod-1")
    assert render(None, Text("x"), context).text == "x"
