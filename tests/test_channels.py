"""Teams, Discord and PagerDuty through the real daemon to loopback stand-ins that check
the fields each vendor requires (answering 400 as the vendor would when one is
wrong), and PagerDuty's resolve when a crossing condition clears."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web
from conftest import settled

ROUTING_KEY = "R0UT1NGKEY0123456789abcdefABCDEF"  # 32 characters, as PagerDuty's are
CREATED = {"type": "artifact.created", "entity": "acme", "project": "vision",
           "collection": "resnet", "version": 4, "author": "ana"}


def channel_config(kind: str, fields: str, severity: str = "ERROR",
                   event: str = '{ kind = "CREATE_ARTIFACT" }', name: str = "new-model") -> str:
    return f"""
[secrets]
HOOK = {{ env = "RH_CHANNEL_SECRET" }}

[integrations.out]
kind = "{kind}"
{fields}
allow_http = true
allow_private = true
rate = "100/s"

[[automations]]
name = "{name}"
scope = "project:acme/vision"
event = {event}
cooldown = "0"
action = {{ integration = "out", title = "New version of ${{artifact_collection_name}}", text = "by ${{event_author}} @everyone", severity = "{severity}" }}
"""


class Vendor:
    """A loopback stand-in: `check(body)` returns the problems the vendor would
    answer 400 for; every request's body and problems are queued for the test."""

    def __init__(self, check: Any, ok_status: int, ok_body: str = "") -> None:
        self.check = check
        self.ok = (ok_status, ok_body)
        self.got: asyncio.Queue[tuple[dict[str, Any], list[str], dict[str, str]]] = \
            asyncio.Queue()

    async def handle(self, request: web.Request) -> web.Response:
        problems: list[str] = []
        if request.content_type != "application/json":
            problems.append(f"content type {request.content_type}")
        try:
            body = json.loads(await request.read())
        except ValueError:
            body, problems = {}, [*problems, "not JSON"]
        problems += self.check(body)
        self.got.put_nowait((body, problems, dict(request.headers)))
        if problems:
            return web.Response(status=400, text="; ".join(problems))
        return web.Response(status=self.ok[0], text=self.ok[1])


def secret_nowhere(daemon: Any, value: str) -> None:
    assert value not in daemon.log_text()
    for path in daemon.directory.glob("runhook.db*"):
        assert value.encode() not in path.read_bytes(), path


async def only_execution(daemon: Any) -> dict[str, Any]:
    async with daemon.client() as client:
        [row] = (await client.request({"type": "query.history"}))["executions"]
    return await settled(daemon, row["id"])


def teams_problems(body: dict[str, Any]) -> list[str]:
    """What a Workflows flow posting the card needs: the message envelope with an
    Adaptive Card attachment, and a card of a version Teams renders."""
    if body.get("type") != "message" or not isinstance(body.get("attachments"), list):
        return ["'attachments' is of type 'Null'"]
    [attachment] = body["attachments"]
    card = attachment.get("content", {})
    problems = []
    if attachment.get("contentType") != "application/vnd.microsoft.card.adaptive":
        problems.append("contentType")
    if card.get("type") != "AdaptiveCard" or card.get("version") not in ("1.0", "1.2", "1.4",
                                                                         "1.5"):
        problems.append("card type/version")
    if not card.get("body") or any("type" not in element for element in card["body"]):
        problems.append("card body")
    if len(json.dumps(body).encode()) > 28 * 1024:
        problems.append("Request Entity too large")
    return problems


async def test_teams_adaptive_card(start_daemon, serve):
    vendor = Vendor(teams_problems, 202)
    url = await serve(vendor.handle)
    daemon = await start_daemon(channel_config("teams", 'url_secret = "HOOK"'),
                                env={"RH_CHANNEL_SECRET": url + "?sig=TEAMSSIGNATURE0123"})
    async with daemon.client() as client:
        assert await client.send(CREATED) == {"ok": True}
    body, problems, _ = await asyncio.wait_for(vendor.got.get(), 20)
    assert problems == []
    card = body["attachments"][0]["content"]
    header, text, line = card["body"]
    assert header["style"] == "attention"  # ERROR
    assert header["items"][0]["text"] == "New version of resnet"
    assert text == {"type": "TextBlock", "text": "by ana @everyone", "wrap": True}
    assert line["text"] == "automation **new-model** · acme/vision · CREATE_ARTIFACT"
    done = await only_execution(daemon)
    assert done["execution"]["state"] == "FINISHED"
    assert [a["status"] for a in done["attempts"]] == [202]
    secret_nowhere(daemon, "TEAMSSIGNATURE0123")


def discord_problems(body: dict[str, Any]) -> list[str]:
    """Discord's execute-webhook rules: content or embeds; embed limits; color an int."""
    embeds = body.get("embeds") or []
    if not body.get("content") and not embeds:
        return ["Cannot send an empty message"]
    problems = []
    total = 0
    for embed in embeds:
        for field, limit in (("title", 256), ("description", 4096)):
            total += len(embed.get(field, ""))
            if len(embed.get(field, "")) > limit:
                problems.append(f"{field}: Must be {limit} or fewer in length.")
        total += len(embed.get("footer", {}).get("text", ""))
        if not isinstance(embed.get("color", 0), int):
            problems.append("color: not an integer")
    if total > 6000:
        problems.append("Embed size exceeds maximum size of 6000")
    return problems


async def test_discord_embed(start_daemon, serve):
    vendor = Vendor(discord_problems, 204)
    url = await serve(vendor.handle)
    token = "DISCORDTOKEN-abcdefghijklmnop"
    daemon = await start_daemon(channel_config("discord", 'url_secret = "HOOK"\n'
                                               'username = "runhook"', severity="WARN"),
                                env={"RH_CHANNEL_SECRET": f"{url}?token={token}"})
    async with daemon.client() as client:
        assert await client.send({**CREATED, "collection": "r" * 400}) == {"ok": True}
    body, problems, _ = await asyncio.wait_for(vendor.got.get(), 20)
    assert problems == []
    [embed] = body["embeds"]
    assert embed["color"] == 0xDAA038  # WARN
    assert len(embed["title"]) == 256 and embed["title"].startswith("New version of rrr")
    assert embed["description"] == "by ana @everyone"
    assert body["allowed_mentions"] == {"parse": []}  # the @everyone pings no one
    assert body["username"] == "runhook"
    assert (await only_execution(daemon))["execution"]["state"] == "FINISHED"
    secret_nowhere(daemon, token)


def pagerduty_problems(body: dict[str, Any]) -> list[str]:
    """Events API v2: routing_key, event_action, dedup_key ≤ 255; a trigger's payload
    needs summary (≤ 1024), source and a severity from the four."""
    problems = []
    if body.get("routing_key") != ROUTING_KEY:
        problems.append("Invalid routing key")
    action = body.get("event_action")
    if action not in ("trigger", "acknowledge", "resolve"):
        problems.append("Invalid event_action")
    if len(body.get("dedup_key", "")) > 255:
        problems.append("dedup_key too long")
    if action == "trigger":
        payload = body.get("payload", {})
        if not payload.get("summary") or len(payload["summary"]) > 1024:
            problems.append("payload.summary")
        if not payload.get("source"):
            problems.append("payload.source")
        if payload.get("severity") not in ("critical", "error", "warning", "info"):
            problems.append("payload.severity")
    elif not body.get("dedup_key"):
        problems.append("dedup_key is required for acknowledge and resolve")
    return problems


async def test_pagerduty_trigger_then_resolve_with_the_same_dedup_key(start_daemon, serve):
    vendor = Vendor(pagerduty_problems, 202,
                    '{"status":"success","message":"Event processed"}')
    url = await serve(vendor.handle)
    config = channel_config(
        "pagerduty", f'routing_key = "HOOK"\nurl = "{url}"', name="loss-high",
        event='{ kind = "RUN_METRIC_THRESHOLD", metric = "loss", cmp = ">", threshold = 5 }'
    ).replace("New version of ${artifact_collection_name}", "Loss high in ${run_name}")
    daemon = await start_daemon(config, env={"RH_CHANNEL_SECRET": ROUTING_KEY})
    run = {"type": "run.metrics", "entity": "acme", "project": "vision", "run_id": "r1",
           "run_name": "prod-1", "user": "ana"}
    async with daemon.client() as client:
        # 10 > 5: the condition becomes true, a trigger.
        assert await client.send({**run, "values": {"loss": 10.0}}) == {"ok": True}
        trigger, problems, _ = await asyncio.wait_for(vendor.got.get(), 20)
        assert problems == []
        # 7 > 5 still holds: nothing. 1 ≤ 5: the condition turned false, a resolve.
        assert await client.send({**run, "values": {"loss": 7.0}}) == {"ok": True}
        assert await client.send({**run, "values": {"loss": 1.0}}) == {"ok": True}
        resolve, problems, _ = await asyncio.wait_for(vendor.got.get(), 20)
        assert problems == []
    assert trigger["event_action"] == "trigger" and trigger["dedup_key"] == "loss-high/r1"
    payload = trigger["payload"]
    assert (payload["summary"], payload["severity"], payload["source"]) == \
        ("Loss high in prod-1", "error", "acme/vision")
    assert payload["custom_details"]["metric_values"] == [10.0]
    assert resolve == {"routing_key": ROUTING_KEY, "event_action": "resolve",
                       "dedup_key": "loss-high/r1"}
    async with daemon.client() as client:
        rows = (await client.request({"type": "query.history"}))["executions"]
    assert [r["context"].get("event_action") for r in reversed(rows)] == [None, "resolve"]
    for row in rows:
        assert (await settled(daemon, row["id"]))["execution"]["state"] == "FINISHED"
    assert vendor.got.empty()
    secret_nowhere(daemon, ROUTING_KEY)
