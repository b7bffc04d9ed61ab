"""What the client commands answer, against a real daemon and a loopback receiver:
`runhook test` refuses a secret its integration does not list (never sends it empty),
says a status once; `enable`, `history --state`, `redeliver --failed` and `status` say
what they did in words a person can act on."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from conftest import SIGNING_KEY, eventually, free_port, webhook_config, write_config


def cli(daemon: Any, *args: str, cwd: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "runhook", *args, "--socket", daemon.socket],
                          check=False, capture_output=True, text=True, timeout=60, cwd=cwd)


async def test_a_test_payload_naming_an_unlisted_secret_is_refused(start_daemon, receiver):
    daemon = await start_daemon(webhook_config(receiver.url))
    # SIGNING is a secret, but integration ci does not list it in `secrets`: sent, it
    # would render empty; check-config refuses the same in an automation's payload.
    refused = await asyncio.to_thread(cli, daemon, "test", "ci", "--payload",
                                      '{"text": "hi ${SIGNING}"}')
    assert refused.returncode == 1
    assert refused.stderr.splitlines()[-1] == (
        "runhook: not sent: bad payload: unknown variable ${SIGNING}: not a W&B template "
        "variable, nor a secret that integration 'ci' lists in `secrets`")
    assert SIGNING_KEY not in refused.stdout + refused.stderr
    # Nothing went out: the next request the receiver sees is this one.
    sent = await asyncio.to_thread(cli, daemon, "test", "ci", "--payload", '{"text": "hi"}')
    assert sent.returncode == 0, sent.stderr
    assert json.loads((await receiver.next()).body) == {"text": "hi"}
    assert len(receiver.requests) == 1


ALIAS = {"type": "artifact.alias_added", "entity": "acme", "registry": "model",
         "collection": "resnet", "version": 1, "alias": "production"}


async def test_a_410_is_said_once_and_enable_does_not_repeat_its_hint(start_daemon, receiver):
    receiver.responses.extend([(410, "", {}), (410, "", {})])
    daemon = await start_daemon(webhook_config(receiver.url))
    tested = await asyncio.to_thread(cli, daemon, "test", "ci")
    assert tested.returncode == 1
    line = tested.stdout.splitlines()[0]
    assert line.startswith("execution ex_") and line.endswith(": status 410"), line
    # A delivery's 410 disables the integration; the reason names the way back.
    async with daemon.client() as client:
        assert await client.send(ALIAS) == {"ok": True}
    await receiver.next()
    status = await eventually(lambda: integration(daemon), lambda i: i["disabled"])
    assert status["disabled"].endswith("; `runhook enable ci` resumes")
    enabled = await asyncio.to_thread(cli, daemon, "enable", "ci")
    reason = status["disabled"].removesuffix("; `runhook enable ci` resumes")
    assert enabled.stdout == f"ci: enabled (was disabled: {reason})\n"


async def integration(daemon: Any) -> dict[str, Any]:
    async with daemon.client() as client:
        answer = await client.request({"type": "query.status"})
    return dict(answer["status"]["integrations"][0])


async def test_history_state_in_any_case_and_redeliver_says_its_window(start_daemon, receiver):
    daemon = await start_daemon(webhook_config(receiver.url))
    sent = await asyncio.to_thread(cli, daemon, "test", "ci")
    assert sent.returncode == 0, sent.stderr
    execution_id = sent.stdout.split()[1].rstrip(":")
    for state in ("finished", "Finished", "FINISHED"):
        history = await asyncio.to_thread(cli, daemon, "history", "--state", state)
        assert history.returncode == 0, history.stderr
        assert execution_id in history.stdout
    failed = await asyncio.to_thread(cli, daemon, "redeliver", "--failed")
    assert failed.stdout.splitlines()[0] == (
        "0 executions queued for redelivery (same webhook-id), of those FAILED in the "
        "last 24h")
    neither = await asyncio.to_thread(cli, daemon, "redeliver")
    assert neither.returncode == 2
    assert neither.stderr == ("runhook: give an EXECUTION_ID, or --failed (with --since "
                              "DURATION, default 24h)\n")
    helped = await asyncio.to_thread(cli, daemon, "redeliver", "--help")
    assert "how far back (default 24h;" in " ".join(helped.stdout.split())


async def test_status_shows_the_configuration_path_absolute(start_daemon, short_dir: Path):
    # The daemon started with a path relative to its working directory; a client
    # elsewhere (here /) must still be able to find the file from what status says.
    config = write_config(short_dir, "", free_port())
    relative = Path(os.path.relpath(config))
    assert not relative.is_absolute()
    daemon = await start_daemon(config=relative)
    status = await asyncio.to_thread(cli, daemon, "status", cwd="/")
    assert status.returncode == 0, status.stderr
    assert f", config {config.resolve()}\n" in status.stdout.splitlines()[0] + "\n"
