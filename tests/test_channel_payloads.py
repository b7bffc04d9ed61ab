"""The message channels' payloads and their load-time errors, pure: each vendor's
documented shape and limits (see each module's docstring), and every bad field
named by its path."""

from __future__ import annotations

import json

import pytest

from runhook.config.model import ConfigError, decode
from runhook.config.settings import build
from runhook.delivery.channels import discord, email, pagerduty, teams
from runhook.delivery.channels.common import Rendered, fit

RUN = {"automation_name": "loss-high", "entity_name": "acme", "project_name": "vision",
       "event_type": "RUN_METRIC_THRESHOLD", "run_id": "r1", "run_name": "prod-1",
       "execution_id": "ex_1", "event_time": "2026-11-27T10:00:00.000Z"}


def test_pagerduty_dedup_key_is_automation_and_run_or_collection():
    assert pagerduty.dedup_key(RUN) == "loss-high/r1"
    artifact = {"automation_name": "new-model", "artifact_version": "acme/vision/resnet:v4"}
    assert pagerduty.dedup_key(artifact) == "new-model/acme/vision/resnet"
    long = pagerduty.dedup_key({**RUN, "run_id": "r" * 400})
    assert len(long) == 255 and long.startswith("loss-high/rrr") and "#" in long
    assert long != pagerduty.dedup_key({**RUN, "run_id": "r" * 401})  # still unique


def test_pagerduty_trigger_and_resolve_bodies():
    body = pagerduty.event("R" * 32, "t" * 2000, "why", "WARN", RUN)
    assert body["event_action"] == "trigger" and body["dedup_key"] == "loss-high/r1"
    payload = body["payload"]
    assert len(payload["summary"]) == 1024 and payload["summary"].endswith("…")
    assert (payload["severity"], payload["source"]) == ("warning", "acme/vision")
    assert payload["timestamp"] == RUN["event_time"]
    assert payload["custom_details"]["text"] == "why"
    assert {pagerduty.event("k", "t", "", s, RUN)["payload"]["severity"]
            for s in ("INFO", "WARN", "ERROR")} == {"info", "warning", "error"}
    resolve = pagerduty.event("k", "t", "", "ERROR", {**RUN, "event_action": "resolve"})
    assert resolve == {"routing_key": "k", "event_action": "resolve",
                       "dedup_key": "loss-high/r1"}


def test_discord_embed_limits():
    body = discord.message("t" * 300, "d" * 5000, "ERROR", {**RUN, "automation_name": "a" * 3000})
    [embed] = body["embeds"]
    assert len(embed["title"]) == 256 and len(embed["footer"]["text"]) <= 2048
    total = len(embed["title"]) + len(embed["description"]) + len(embed["footer"]["text"])
    assert total <= 6000 and len(embed["description"]) <= 4096
    assert embed["color"] == 0xA30200 and body["allowed_mentions"] == {"parse": []}
    short = discord.message("t", "", "INFO", RUN)["embeds"][0]
    assert "description" not in short and short["color"] == 0x2EB886


def test_teams_card_stays_under_the_message_limit():
    def encode(title: str, text: str) -> bytes:
        return json.dumps(teams.card(title, text, "ERROR", RUN)).encode()

    body = fit(encode, Rendered("title", "\x01" * 40_000), teams.MESSAGE_LIMIT_BYTES)
    assert len(body) <= teams.MESSAGE_LIMIT_BYTES  # each \x01 is six bytes escaped
    card = json.loads(body)["attachments"][0]["content"]
    assert card["body"][1]["text"].endswith("…")
    assert card["body"][0]["style"] == "attention"


def test_email_subject_is_one_line_and_ids_are_stable():
    mail = email.message("ML <ml@example.com>", ["a@example.com", "b@example.com"],
                         "loss\r\nBcc: evil@example.com", "text", RUN)
    assert mail["Subject"] == "loss Bcc: evil@example.com"
    assert mail["Bcc"] is None and mail["To"] == "a@example.com, b@example.com"
    assert mail["Message-ID"] == "<ex_1@runhook>" and mail["Auto-Submitted"] == "auto-generated"


MAIL = 'kind = "email"\nhost = "smtp.example.com"\nfrom = "a@example.com"\n'
BASE = """
[secrets]
HOOK = { env = "RH_TEST_HOOK" }
"""


@pytest.mark.parametrize("integration, expected", [
    ('kind = "teams"', "integrations.x: object missing required field `url_secret`"),
    ('kind = "teams"\nurl_secret = "NOPE"', "integrations.x.url_secret: 'NOPE' is not declared"),
    ('kind = "discord"\nurl_secret = "HOOK"',
     "integrations.x.url_secret: secret 'HOOK': plain http needs allow_http"),
    ('kind = "pagerduty"\nrouting_key = "NOPE"',
     "integrations.x.routing_key: 'NOPE' is not declared"),
    ('kind = "pagerduty"\nrouting_key = "HOOK"\nurl = "http://10.0.0.1/x"\nallow_http = true',
     "integrations.x.url: 10.0.0.1 is a private address"),
    ('kind = "email"\nhost = "10.1.2.3"\nfrom = "a@example.com"\nto = ["b@example.com"]',
     "integrations.x.host: 10.1.2.3 is a private address"),
    (MAIL + 'to = ["nobody"]',
     "integrations.x.to[0]: 'nobody' is not one mail address"),
    (MAIL + 'to = []',
     "integrations.x.to: expected `array` of length >= 1"),
    (MAIL + 'to = ["b@example.com"]\ntls = "none"', "integrations.x.tls: invalid value 'none'"),
    (MAIL + 'to = ["b@example.com"]\nusername = "ml"', "integrations.x: give both username and password"),
])
def test_bad_channel_config_names_the_path(monkeypatch, integration, expected):
    monkeypatch.setenv("RH_TEST_HOOK", "http://hooks.example.com/secret-path-123")
    with pytest.raises(ConfigError) as caught:
        build(decode(f"{BASE}\n[integrations.x]\n{integration}\n"))
    assert any(p.startswith(expected) for p in caught.value.problems), caught.value.problems
    assert not any("secret-path-123" in p for p in caught.value.problems)


def test_a_channel_action_takes_no_payload(monkeypatch):
    monkeypatch.setenv("RH_TEST_HOOK", "k" * 32)
    text = f"""{BASE}
[integrations.pd]
kind = "pagerduty"
routing_key = "HOOK"

[[automations]]
name = "a"
scope = "project:acme/vision"
event = {{ kind = "CREATE_ARTIFACT" }}
action = {{ integration = "pd", payload = '{{}}' }}
"""
    with pytest.raises(ConfigError) as caught:
        build(decode(text))
    assert caught.value.problems == [
        ("automations[0].action.payload: pagerduty actions take title, text and severity "
         "(automation 'a')")]
