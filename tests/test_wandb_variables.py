"""W&B's variables (docs/wandb.md): `${ACCESS_TOKEN}` rendered only in what is sent,
`${project_name}` on registry events, `${run_reason}`; through the real daemon."""

from __future__ import annotations

import json
import sqlite3

import pytest
from conftest import settled, webhook_config

from runhook.config.model import ConfigError, decode
from runhook.config.settings import build

TOKEN = "tok-wandb-9f8e7d6c5b"
ALIAS_EVENT = {"type": "artifact.alias_added", "entity": "acme", "registry": "model",
               "collection": "resnet", "version": 3, "alias": "production", "author": "ana"}


async def test_access_token_is_rendered_when_sent_and_never_stored(start_daemon, receiver):
    payload = '{"token": "${ACCESS_TOKEN}", "auth": "Bearer ${ACCESS_TOKEN}", "p": "${project_name}"}'
    body = webhook_config(receiver.url, payload, extra='access_token = "TOKEN"').replace(
        "[secrets]", '[secrets]\nTOKEN = { env = "RH_TEST_TOKEN" }')
    daemon = await start_daemon(body, env={"RH_TEST_TOKEN": TOKEN})
    async with daemon.client() as client:
        assert await client.send(ALIAS_EVENT) == {"ok": True}
    request = await receiver.next()
    assert json.loads(request.body) == {"token": TOKEN, "auth": f"Bearer {TOKEN}",
                                        "p": "wandb-registry-model"}
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    await settled(daemon, request.headers["webhook-id"])
    await daemon.stop()
    # Not in any row of any table, nor in the log.
    with sqlite3.connect(daemon.database) as db:
        for (table,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'"):
            for row in db.execute(f'SELECT * FROM "{table}"'):
                assert TOKEN not in repr(row), table
    assert TOKEN not in daemon.log_text()


def _config(extra: str, payload: str) -> str:
    return f"""
[secrets]
OTHER = {{ env = "RH_TEST_OTHER_SECRET" }}
[integrations.ci]
kind = "webhook"
url = "https://ci.example.com/hook"
{extra}
[[automations]]
name = "deploy"
scope = "registry:acme/model"
event = {{ kind = "LINK_ARTIFACT" }}
action = {{ integration = "ci", payload = '{payload}' }}
"""


def test_access_token_needs_an_access_token(monkeypatch):
    monkeypatch.setenv("RH_TEST_OTHER_SECRET", "a-long-enough-secret")
    with pytest.raises(ConfigError) as caught:
        build(decode(_config("", '{"t": "${ACCESS_TOKEN}"}')))
    assert caught.value.problems == [
        ("automations[0].action.payload: ${ACCESS_TOKEN} is the access_token of a webhook "
        "integration; 'ci' has none (automation 'deploy')")]
    build(decode(_config('access_token = "OTHER"', '{"t": "${ACCESS_TOKEN}"}')))


async def test_run_reason_on_failure(start_daemon, receiver):
    payload = '{"status": "${run_status}", "why": "${run_reason}"}'
    daemon = await start_daemon(webhook_config(
        receiver.url, payload, scope="project:acme/vision",
        event='{ kind = "RUN_STATE", states = ["FAILED"] }'))
    run = {"entity": "acme", "project": "vision", "run_id": "r1", "run_name": "prod-1"}
    async with daemon.client() as client:
        await client.send({"type": "run.state", **run, "state": "running"})
        await client.send({"type": "run.state", **run, "state": "failed",
                           "reason": "ValueError: loss is nan"})
    request = await receiver.next()
    assert json.loads(request.body) == {"status": "failed", "why": "ValueError: loss is nan"}
