"""`runhook redeliver` against a real daemon and a loopback receiver: test executions
are sent again by the rule `runhook test` used, `--failed` leaves them out, and what
cannot be sent is refused at the socket without blaming the integration."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from typing import Any

from conftest import SIGNING_KEY, eventually, execution, settled, webhook_config

ALIAS = {"type": "artifact.alias_added", "entity": "acme", "registry": "model",
         "collection": "resnet", "version": 1, "alias": "production"}


def cli(daemon: Any, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "runhook", *args, "--socket", daemon.socket],
                          check=False, capture_output=True, text=True, timeout=60)


async def integration_status(daemon: Any, name: str) -> dict[str, Any]:
    async with daemon.client() as client:
        answer = await client.request({"type": "query.status"})
    return next(i for i in answer["status"]["integrations"] if i["name"] == name)


async def test_redeliver_a_test_execution_sends_its_payload_again(start_daemon, receiver):
    receiver.responses.append((503, "down for a moment", {}))
    daemon = await start_daemon(webhook_config(receiver.url))
    payload = '{"ping": 1, "id": "${execution_id}", "who": "${automation_name}"}'
    tested = await asyncio.to_thread(cli, daemon, "test", "ci", "--payload", payload)
    assert tested.returncode == 1 and "status 503" in tested.stdout
    first = await receiver.next()
    execution_id = first.headers["webhook-id"]
    assert (await execution(daemon, execution_id))["execution"]["state"] == "FAILED"

    again = await asyncio.to_thread(cli, daemon, "redeliver", execution_id)
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith("1 execution queued")
    done = await settled(daemon, execution_id)
    assert done["execution"]["state"] == "FINISHED", done["execution"]["reason"]
    assert [a["status"] for a in done["attempts"]] == [503, 200]
    second = await receiver.next()
    assert second.headers["webhook-id"] == execution_id  # receivers deduplicate on it
    assert json.loads(second.body) == json.loads(first.body) == \
        {"ping": 1, "id": execution_id, "who": "(test)"}
    assert (await integration_status(daemon, "ci"))["last_error"] is None


async def test_redeliver_a_test_without_payload_sends_the_same_envelope(start_daemon, receiver):
    receiver.responses.append((500, "no", {}))
    daemon = await start_daemon(webhook_config(receiver.url))
    tested = await asyncio.to_thread(cli, daemon, "test", "ci")
    assert tested.returncode == 1
    first = await receiver.next()
    execution_id = first.headers["webhook-id"]

    again = await asyncio.to_thread(cli, daemon, "redeliver", execution_id)
    assert again.returncode == 0, again.stderr
    assert (await settled(daemon, execution_id))["execution"]["state"] == "FINISHED"
    second = await receiver.next()
    assert second.body == first.body
    assert json.loads(second.body)["type"] == "TEST"


async def test_redeliver_failed_leaves_test_executions_out(start_daemon, receiver):
    receiver.responses.extend([(400, "bad", {}), (400, "bad", {})])
    daemon = await start_daemon(webhook_config(receiver.url))
    async with daemon.client() as client:
        assert await client.send(ALIAS) == {"ok": True}
    real = (await receiver.next()).headers["webhook-id"]
    tested = await asyncio.to_thread(cli, daemon, "test", "ci")
    assert tested.returncode == 1
    test_id = (await receiver.next()).headers["webhook-id"]
    assert (await settled(daemon, real))["execution"]["state"] == "FAILED"

    rest = await asyncio.to_thread(cli, daemon, "redeliver", "--failed", "--since", "1h")
    assert rest.returncode == 0, rest.stderr
    assert rest.stdout.startswith("1 execution queued")
    assert real in rest.stdout
    assert f"{test_id}: a test execution" in rest.stdout
    assert (await receiver.next()).headers["webhook-id"] == real
    assert (await settled(daemon, real))["execution"]["state"] == "FINISHED"
    assert (await execution(daemon, test_id))["execution"]["state"] == "FAILED"


async def test_a_test_payload_holding_a_secret_is_not_stored_nor_redelivered(start_daemon,
                                                                              receiver):
    receiver.responses.append((500, "no", {}))
    daemon = await start_daemon(webhook_config(receiver.url))
    payload = json.dumps({"key": SIGNING_KEY})
    tested = await asyncio.to_thread(cli, daemon, "test", "ci", "--payload", payload)
    assert tested.returncode == 1
    first = await receiver.next()
    assert json.loads(first.body) == {"key": SIGNING_KEY}  # sent as given
    execution_id = first.headers["webhook-id"]
    stored = await execution(daemon, execution_id)
    assert SIGNING_KEY not in json.dumps(stored)

    refused = await asyncio.to_thread(cli, daemon, "redeliver", execution_id)
    assert refused.returncode == 1
    assert f"cannot redeliver {execution_id}" in refused.stderr
    assert "secret" in refused.stderr
    assert (await execution(daemon, execution_id))["execution"]["state"] == "FAILED"
    assert len(receiver.requests) == 1


async def test_an_automation_gone_fails_its_execution_not_the_integration(start_daemon,
                                                                          receiver):
    """An execution waiting (here behind a rate limit of one an hour) when a reload
    removes its automation fails for that reason; the integration is not failing.
    Redelivering it is refused at the socket, with the reason."""
    daemon = await start_daemon(webhook_config(receiver.url, extra='rate = "1/h"'))
    async with daemon.client() as client:
        assert await client.send(ALIAS) == {"ok": True}
        assert await client.send({**ALIAS, "version": 2}) == {"ok": True}
        sent = (await receiver.next()).headers["webhook-id"]
        rows = (await client.request({"type": "query.history"}))["executions"]
    waiting = next(r["id"] for r in rows if r["id"] != sent)

    # No automation, and no rate limit (so the actor restarts and reads the row).
    text = daemon.config.read_text().replace('rate = "1/h"', "")
    daemon.config.write_text(text.split("[[automations]]")[0])
    reloaded = await asyncio.to_thread(cli, daemon, "reload")
    assert reloaded.returncode == 0, reloaded.stderr
    failed = await settled(daemon, waiting)
    assert failed["execution"]["reason"] == "automation 'deploy' is no longer configured"
    assert (await integration_status(daemon, "ci"))["last_error"] is None

    refused = await asyncio.to_thread(cli, daemon, "redeliver", waiting)
    assert refused.returncode == 1
    assert "automation 'deploy' is no longer configured" in refused.stderr
    assert (await execution(daemon, waiting))["execution"]["state"] == "FAILED"


async def test_a_redelivery_restarts_the_retry_schedule(start_daemon, receiver):
    """A 400 fails the execution after one attempt; redelivered, it gets a 503. That
    is the first attempt of the new round, so the retry is due 5 s (±20 %) later, the
    schedule's first wait; counted as the execution's second attempt it would be
    300 s, the second wait."""
    receiver.responses.extend([(400, "bad", {}), (503, "busy", {})])
    daemon = await start_daemon(webhook_config(receiver.url))
    async with daemon.client() as client:
        assert await client.send(ALIAS) == {"ok": True}
    execution_id = (await receiver.next()).headers["webhook-id"]
    assert (await settled(daemon, execution_id))["execution"]["state"] == "FAILED"

    again = await asyncio.to_thread(cli, daemon, "redeliver", execution_id)
    assert again.returncode == 0, again.stderr
    assert (await receiver.next()).headers["webhook-id"] == execution_id
    pending = await eventually(lambda: execution(daemon, execution_id),
                               lambda a: a["execution"]["attempts"] == 2)
    assert pending["execution"]["state"] == "PENDING"
    assert [a["status"] for a in pending["attempts"]] == [400, 503]
    wait = pending["execution"]["next_attempt_at"] - pending["execution"]["updated_at"]
    assert 4.0 <= wait <= 6.0, wait
