"""The whole path with real parts: daemon process, Unix socket, SQLite file, HTTP receiver."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import standardwebhooks
from conftest import SIGNING_KEY, eventually, settled, webhook_config

PAYLOAD = """{"event_type": "BUILD_AND_DEPLOY",
 "client_payload": {"version": "${artifact_version_string}", "index": "${artifact_version_index}",
                    "by": "${event_author}", "alias": "${alias}"}}"""

ALIAS_EVENT = {"type": "artifact.alias_added", "entity": "acme", "registry": "model",
               "collection": "resnet", "version": 3, "alias": "production", "author": "ana"}


def cli(daemon, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "runhook", *args, "--socket", daemon.socket],
                          check=False, capture_output=True, text=True, timeout=30)


async def test_production_alias_fires_signed_webhook(start_daemon, receiver):
    daemon = await start_daemon(webhook_config(receiver.url, PAYLOAD))
    async with daemon.client() as client:
        assert await client.send(ALIAS_EVENT) == {"ok": True}
    request = await receiver.next()

    assert json.loads(request.body) == {
        "event_type": "BUILD_AND_DEPLOY",
        "client_payload": {"version": "acme/model/resnet:production", "index": 3,
                           "by": "ana", "alias": "production"}}
    assert request.headers["Content-Type"] == "application/json"
    # The reference library verifies the signature over the exact bytes received.
    verified = standardwebhooks.Webhook(SIGNING_KEY).verify(request.body, request.headers)
    assert verified["client_payload"]["version"] == "acme/model/resnet:production"

    # `runhook history --json` shows the execution FINISHED, with the webhook-id as its id.
    # The attempt's row commits just after the receiver answers.
    rows = await eventually(lambda: asyncio.to_thread(
        lambda: json.loads(cli(daemon, "history", "--json").stdout)),
        lambda rows: rows and rows[0]["state"] == "FINISHED")
    assert len(rows) == 1
    assert rows[0]["state"] == "FINISHED"
    assert rows[0]["id"] == request.headers["webhook-id"]
    assert rows[0]["automation"] == "deploy"
    assert rows[0]["attempts"] == 1


async def test_other_alias_does_not_fire(start_daemon, receiver):
    daemon = await start_daemon(webhook_config(receiver.url, PAYLOAD))
    async with daemon.client() as client:
        await client.send({**ALIAS_EVENT, "alias": "staging"})
        await client.send({**ALIAS_EVENT, "alias": "production"})
    request = await receiver.next()
    # Events are evaluated in order: had staging fired, it would have arrived first.
    assert json.loads(request.body)["client_payload"]["alias"] == "production"
    rows = json.loads(cli(daemon, "history", "--json").stdout)
    assert [r["context"]["alias"] for r in rows] == ["production"]


async def test_default_envelope_and_bearer_token(start_daemon, receiver):
    body = webhook_config(receiver.url, extra='access_token = "TOKEN"').replace(
        "[secrets]", "[secrets]\nTOKEN = { env = \"RH_TEST_TOKEN\" }")
    daemon = await start_daemon(body, env={"RH_TEST_TOKEN": "tok-abc-123"})
    async with daemon.client() as client:
        await client.send({**ALIAS_EVENT, "time": "2026-01-02T03:04:05Z"})
    request = await receiver.next()
    assert request.headers["Authorization"] == "Bearer tok-abc-123"
    envelope = json.loads(request.body)
    assert envelope["type"] == "ADD_ARTIFACT_ALIAS"
    assert envelope["timestamp"] == "2026-01-02T03:04:05.000Z"
    data = envelope["data"]
    assert data["artifact_version"] == "acme/model/resnet:v3"
    assert data["artifact_version_string"] == "acme/model/resnet:production"
    assert data["registry_name"] == "model"
    assert data["execution_id"] == request.headers["webhook-id"]
    # W&B renders a registry's own project there (docs/wandb.md)
    assert data["project_name"] == "wandb-registry-model"


async def test_retry_after_server_error_then_success(start_daemon, receiver):
    receiver.responses.append((503, "busy", {}))
    daemon = await start_daemon(webhook_config(receiver.url, PAYLOAD))
    async with daemon.client() as client:
        await client.send(ALIAS_EVENT)
    first = await receiver.next()
    second = await receiver.next()  # the retry schedule: the first retry, 5 s (±20 %) later
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    answer = await settled(daemon, first.headers["webhook-id"])
    assert [a["status"] for a in answer["attempts"]] == [503, 200]
    assert answer["attempts"][0]["response"] == "busy"


async def test_client_error_fails_at_once(start_daemon, receiver):
    receiver.responses.append((404, "no such hook", {}))
    daemon = await start_daemon(webhook_config(receiver.url, PAYLOAD))
    async with daemon.client() as client:
        await client.send(ALIAS_EVENT)
    request = await receiver.next()
    answer = await settled(daemon, request.headers["webhook-id"])
    assert answer["execution"]["state"] == "FAILED"
    assert answer["execution"]["reason"].startswith("HTTP 404")
    assert len(answer["attempts"]) == 1


async def test_redirect_is_not_followed(start_daemon, receiver):
    receiver.responses.append((307, "", {"Location": receiver.url + "/elsewhere"}))
    daemon = await start_daemon(webhook_config(receiver.url, PAYLOAD))
    async with daemon.client() as client:
        await client.send(ALIAS_EVENT)
    request = await receiver.next()
    answer = await settled(daemon, request.headers["webhook-id"])
    assert answer["execution"]["state"] == "FAILED"
    assert "not followed" in answer["execution"]["reason"]
    assert [r.path for r in receiver.requests] == ["/hook"]


async def test_hostile_strings_arrive_as_valid_json(start_daemon, receiver):
    hostile = 'quote " back\\slash \n newline \t tab ünïcødé 🚀 "}, "x": {"'
    payload = '{"author": "${event_author}", "line": "by ${event_author} at ${alias}", "a": ["${alias}"]}'
    daemon = await start_daemon(webhook_config(receiver.url, payload,
                                               event='{ kind = "ADD_ARTIFACT_ALIAS" }'))
    async with daemon.client() as client:
        await client.send({**ALIAS_EVENT, "author": hostile, "alias": hostile})
    body = json.loads((await receiver.next()).body)  # valid JSON, or this raises
    assert body == {"author": hostile, "line": f"by {hostile} at {hostile}", "a": [hostile]}


async def test_entity_scope_sees_projects_and_registries(start_daemon, receiver):
    config = webhook_config(receiver.url, '{"kind": "${event_type}", "where": "${artifact_version}"}',
                            scope="entity:acme", event='{ kind = "CREATE_ARTIFACT" }').replace(
        "[[automations]]", """[[automations]]
name = "links"
scope = "entity:acme"
event = { kind = "LINK_ARTIFACT" }
action = { integration = "ci", payload = '{"kind": "${event_type}", "where": "${artifact_version}"}' }

[[automations]]""")
    daemon = await start_daemon(config)
    async with daemon.client() as client:
        await client.send({"type": "artifact.created", "entity": "acme", "project": "vision",
                           "collection": "ds", "version": 1})
        await client.send({"type": "artifact.linked", "entity": "acme", "registry": "model",
                           "collection": "resnet", "version": 2, "source": "acme/vision/resnet:v5"})
        await client.send({"type": "artifact.created", "entity": "other", "project": "vision",
                           "collection": "ds", "version": 1})  # another entity: nothing
    bodies = [json.loads((await receiver.next()).body) for _ in range(2)]
    got = sorted((b["kind"], b["where"]) for b in bodies)
    assert got == [("CREATE_ARTIFACT", "acme/vision/ds:v1"),
                   ("LINK_ARTIFACT", "acme/model/resnet:v2")]
    async with daemon.client() as client:
        rows = (await client.request({"type": "query.history"}))["executions"]
    assert sorted(r["scope"] for r in rows) == ["entity:acme", "entity:acme"]
