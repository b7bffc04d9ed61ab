"""Slack actions against a loopback stand-in for Slack's two endpoints."""

from __future__ import annotations

import json

from conftest import settled

from runhook.delivery.channels.slack import interpret, message

CREATED = {"type": "artifact.created", "entity": "acme", "project": "vision",
           "collection": "resnet", "version": 4, "author": "ana"}


def slack_config(url: str, mode: str) -> str:
    if mode == "webhook":
        secrets = 'HOOK = { env = "RH_SLACK_URL" }'
        integration = 'url_secret = "HOOK"'
    else:
        secrets = 'BOT = { env = "RH_SLACK_TOKEN" }'
        integration = f'token = "BOT"\nchannel = "#ml-alerts"\napi_url = "{url}/api/chat.postMessage"'
    return f"""
[secrets]
{secrets}

[integrations.alerts]
kind = "slack"
{integration}
allow_http = true
allow_private = true
rate = "100/s"

[[automations]]
name = "new-model"
scope = "project:acme/vision"
event = {{ kind = "CREATE_ARTIFACT" }}
action = {{ integration = "alerts", title = "New version of ${{artifact_collection_name}}", text = "*${{artifact_version}}* by ${{event_author}}: ${{artifact_metadata.notes}}", severity = "ERROR" }}
"""


async def test_incoming_webhook_message(start_daemon, receiver):
    daemon = await start_daemon(slack_config(receiver.url, "webhook"),
                                env={"RH_SLACK_URL": receiver.url})
    notes = "n" * 5000
    async with daemon.client() as client:
        await client.send({**CREATED, "metadata": {"notes": notes}})
    request = await receiver.next()
    body = json.loads(request.body)
    assert body["text"] == "New version of resnet"
    [attachment] = body["attachments"]
    assert attachment["color"] == "#a30200"  # ERROR
    header, section, context = attachment["blocks"]
    assert header == {"type": "header", "text": {"type": "plain_text",
                                                 "text": "New version of resnet"}}
    text = section["text"]["text"]
    assert section["text"]["type"] == "mrkdwn"
    assert len(text) == 3000 and text.endswith("…")  # cut to Slack's section limit
    assert text.startswith("*acme/vision/resnet:v4* by ana: nnn")
    assert context["elements"][0]["text"] == \
        "automation *new-model* · acme/vision · CREATE_ARTIFACT"
    assert "Authorization" not in request.headers


async def test_chat_post_message_errors(start_daemon, receiver):
    receiver.responses.extend([
        (200, '{"ok": false, "error": "ratelimited"}', {}),
        (200, '{"ok": true, "ts": "1.2"}', {}),
        (200, '{"ok": false, "error": "channel_not_found"}', {}),
    ])
    daemon = await start_daemon(slack_config(receiver.url, "token"),
                                env={"RH_SLACK_TOKEN": "xoxb-secret-token"})
    async with daemon.client() as client:
        await client.send(CREATED)
        first = await receiver.next()
        retry = await receiver.next()
        assert first.path == "/hook/api/chat.postMessage"
        assert first.headers["Authorization"] == "Bearer xoxb-secret-token"
        assert json.loads(first.body)["channel"] == "#ml-alerts"
        rows = (await client.request({"type": "query.history"}))["executions"]
        done = await settled(daemon, rows[0]["id"])
        assert done["execution"]["state"] == "FINISHED"
        assert [a["error"] for a in done["attempts"]] == ["HTTP 429: ratelimited", None]

        await client.send({**CREATED, "version": 5})
        await receiver.next()
        rows = (await client.request({"type": "query.history"}))["executions"]
        failed = await settled(daemon, rows[0]["id"])
    assert failed["execution"]["state"] == "FAILED"
    assert failed["execution"]["reason"] == "HTTP 400: channel_not_found"
    assert len(failed["attempts"]) == 1
    assert retry.headers["Authorization"] == first.headers["Authorization"]


def test_interpret_slack_answers():
    assert interpret(200, "ok") == (200, None)
    assert interpret(200, '{"ok": true}') == (200, None)
    assert interpret(200, '{"ok": false, "error": "invalid_payload"}') == (400, "invalid_payload")
    assert interpret(200, '{"ok": false, "error": "internal_error"}') == (503, "internal_error")
    assert interpret(404, "channel_not_found") == (404, "channel_not_found")
    assert interpret(410, "channel_is_archived") == (410, "channel_is_archived")


def test_message_defaults_and_colours():
    body = message("t", "", "WARN", {"automation_name": "a", "registry_name": "model",
                                     "entity_name": "acme", "event_type": "LINK_ARTIFACT"})
    blocks = body["attachments"][0]["blocks"]
    assert body["attachments"][0]["color"] == "#daa038"
    assert [b["type"] for b in blocks] == ["header", "context"]  # no empty section
    long_title = message("x" * 400, "", "INFO", {})["attachments"][0]["blocks"][0]
    assert len(long_title["text"]["text"]) == 150
