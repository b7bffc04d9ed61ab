"""`runhook redeliver` against a real daemon and a loopback receiver: test executions
are sent again by the rule `runhook test` used."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from typing import Any

from conftest import execution, settled, webhook_config

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
    assert again.stdout.startswith("1 execution(s) queued")
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
