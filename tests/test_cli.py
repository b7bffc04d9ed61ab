"""The CLI against a running daemon: send (argument and stdin), history, status."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

from test_socket import GOOD, RECORD

from runhook.core import constants


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "runhook", *args], input=stdin,
                          check=False, capture_output=True, text=True, timeout=60)


async def test_send_history_status(start_daemon):
    daemon = await start_daemon(RECORD)
    one = await asyncio.to_thread(run, "send", "--config", str(daemon.config), json.dumps(GOOD))
    assert one.returncode == 0 and one.stdout == '{"ok":true}\n'

    lines = "\n".join([json.dumps({**GOOD, "version": 2}), "{oops", json.dumps(GOOD)]) + "\n"
    many = await asyncio.to_thread(run, "send", "--socket", daemon.socket, stdin=lines)
    answers = [json.loads(x) for x in many.stdout.splitlines()]
    assert many.returncode == 1  # one line was refused
    assert [a["ok"] for a in answers] == [True, False, True]
    assert answers[1]["error"].startswith("line 2: not valid JSON")

    table = await asyncio.to_thread(run, "history", "--socket", daemon.socket)
    rows = table.stdout.splitlines()
    assert rows[0].split() == ["CREATED", "EXECUTION", "AUTOMATION", "EVENT", "STATE", "TRIES",
                               "REASON"]
    assert len(rows) == 4 and all("record" in row and "FINISHED" in row for row in rows[1:])

    as_json = await asyncio.to_thread(run, "history", "--socket", daemon.socket, "--json",
                                      "--limit", "2")
    assert [r["context"]["artifact_version_index"] for r in json.loads(as_json.stdout)] == [1, 2]

    status = await asyncio.to_thread(run, "status", "--socket", daemon.socket, "--json")
    body = json.loads(status.stdout)
    assert body["events_received"] == {"artifact.created": 3}
    assert body["lines_rejected"] == 1
    assert [a["name"] for a in body["automations"]] == ["record"]


def test_client_command_without_daemon_says_where_it_looked(tmp_path):
    result = run("history", "--socket", str(tmp_path / "none.sock"))
    assert result.returncode != 0
    assert f"cannot reach the daemon at {tmp_path / 'none.sock'}" in result.stderr


def test_a_client_command_that_finds_no_daemon_says_how_to_name_it(tmp_path):
    # A `make run` daemon's socket is where its --config says, not the default one.
    config = tmp_path / "c.toml"
    config.write_text(f'[server]\nsocket = "{tmp_path}/none.sock"\n')
    env = {k: v for k, v in os.environ.items() if k != "RUNHOOK_URL"}

    def status(*args: str, **extra: str) -> str:
        done = subprocess.run([sys.executable, "-m", "runhook", "status", *args],
                              env={**env, **extra}, check=False, capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 1 and done.stdout == "", done
        return done.stderr

    assert status("--config", str(config)) == (
        f"runhook: cannot reach the daemon at {tmp_path}/none.sock: No such file or directory "
        f"(the socket of {config}: is its daemon running?)\n")
    assert status(RUNHOOK_URL=f"unix://{tmp_path}/gone.sock").endswith(
        "(from $RUNHOOK_URL; --config FILE gives the socket of the daemon's file)\n")
    if not os.path.exists(constants.DEFAULT_SOCKET):  # else a daemon is there to reach
        assert status() == (
            f"runhook: cannot reach the daemon at {constants.DEFAULT_SOCKET}: No such file "
            "or directory (the default socket; give the daemon's configuration file with "
            "--config FILE, or --socket PATH, or set $RUNHOOK_URL (unix:///PATH or "
            "https://HOST:PORT))\n")
