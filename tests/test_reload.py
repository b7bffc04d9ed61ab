"""Reload with a file that cannot load: SIGHUP and `command.reload` both refuse it,
log why, and keep the daemon running on the configuration it had."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import Daemon

from runhook.config.locate import socket_of
from runhook.config.model import ConfigError
from runhook.core import constants

GOOD = """
[[automations]]
name = "kept"
scope = "project:acme/vision"
event = { kind = "CREATE_ARTIFACT" }
action = { kind = "none" }
"""


def not_utf8(config: Path) -> str:
    config.write_bytes(config.read_bytes() + b'\n# caf\xe9\n')
    return "not UTF-8: byte 0xe9 at offset"


def deeply_nested(config: Path) -> str:
    config.write_text(config.read_text() + "\nx = " + "[" * 100_000 + "\n")
    return "not valid TOML: arrays or inline tables nested too deeply"


def socket_mode_out_of_range(config: Path) -> str:
    text = config.read_text().replace("[server]", "[server]\nsocket_mode = 1" + "0" * 22)
    config.write_text(text)
    return "server.socket_mode: expected `int` <= 511"


BAD_FILES = [not_utf8, deeply_nested, socket_mode_out_of_range]


async def still_serving(daemon: Daemon) -> None:
    """The daemon answers on the configuration it had: one automation, `kept`."""
    assert daemon.process.returncode is None
    async with daemon.client() as client:
        status = await client.request({"type": "query.status"})
    assert [a["name"] for a in status["status"]["automations"]] == ["kept"]


async def answered_reload(daemon: Daemon) -> str:
    """The READY=1 that ends the reload; fails at once, with the log, if the daemon exits."""
    await daemon.notified("RELOADING=1")
    ready = asyncio.ensure_future(daemon.notified("READY=1"))
    exited = asyncio.ensure_future(daemon.process.wait())
    await asyncio.wait({ready, exited}, return_when=asyncio.FIRST_COMPLETED)
    if not ready.done():
        ready.cancel()
        raise AssertionError(f"daemon exited {exited.result()} on reload:\n{daemon.log_text()}")
    exited.cancel()
    return ready.result()


@pytest.mark.parametrize("spoil", BAD_FILES, ids=lambda f: f.__name__)
async def test_sighup_refuses_and_keeps_running(start_daemon, spoil: Callable[[Path], str]):
    daemon = await start_daemon(GOOD)
    reason = spoil(daemon.config)
    daemon.process.send_signal(signal.SIGHUP)
    kept = await answered_reload(daemon)
    assert "reload refused" in kept
    await still_serving(daemon)
    assert f"reload refused, keeping the running configuration: {reason}" in daemon.log_text()
    assert "Traceback" not in daemon.log_text()


@pytest.mark.parametrize("spoil", BAD_FILES, ids=lambda f: f.__name__)
async def test_reload_command_refuses_with_the_reason(start_daemon,
                                                      spoil: Callable[[Path], str]):
    daemon = await start_daemon(GOOD)
    reason = spoil(daemon.config)
    async with daemon.client() as client:
        answer = await client.request({"type": "command.reload"})
    assert answer["ok"] is False
    assert answer["error"].startswith(
        f"reload refused, the running configuration stays:\n{daemon.config}: {reason}"), answer
    await still_serving(daemon)
    assert f"reload refused, keeping the running configuration: {reason}" in daemon.log_text()
    assert "Traceback" not in daemon.log_text()


def syntax_error(config: Path) -> str:
    config.write_text(config.read_text() + "\n[[automations]\nname = 'half\n")
    return "not valid TOML"


def unknown_key(config: Path) -> str:
    config.write_text(config.read_text().replace("[server]", "[server]\nheartbeat_timout = '5m'"))
    return "unknown field `heartbeat_timout`; did you mean 'heartbeat_timeout'?"


@pytest.mark.parametrize("spoil", [*BAD_FILES, syntax_error, unknown_key],
                         ids=lambda f: f.__name__)
async def test_client_commands_reach_the_daemon_through_a_spoiled_file(
        start_daemon, spoil: Callable[[Path], str]):
    # Client commands read only the socket from --config: a typo elsewhere must not
    # keep them from the daemon, least of all `reload`, whose answer says what is wrong.
    daemon = await start_daemon(GOOD)
    reason = spoil(daemon.config)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "runhook", *args,
                               "--config", str(daemon.config)],
                              check=False, capture_output=True, text=True, timeout=60)

    reload = await asyncio.to_thread(cli, "reload")
    assert reload.returncode == 1, reload
    assert reload.stderr.startswith(
        f"runhook: reload refused, the running configuration stays:\n{daemon.config}: "), \
        reload.stderr
    assert reason in reload.stderr
    status = await asyncio.to_thread(cli, "status", "--json")
    assert status.returncode == 0, status.stderr
    assert [a["name"] for a in json.loads(status.stdout)["automations"]] == ["kept"]
    history = await asyncio.to_thread(cli, "history")
    assert history.returncode == 0, history.stderr
    assert history.stdout == "no executions\n"  # the daemon's answer: nothing was sent
    await still_serving(daemon)


def test_the_socket_is_found_in_a_file_toml_cannot_parse(tmp_path: Path) -> None:
    config = tmp_path / "runhook.toml"
    config.write_text("[server]\nsocket = 'var/ev.sock'  # here\nhttp = \n[x]\nsocket = 'no'\n")
    assert socket_of(config) == str(tmp_path / "var/ev.sock")
    config.write_text("[server\nsocket = \"/run/x.sock\"\n")
    assert socket_of(config) == constants.DEFAULT_SOCKET  # no [server] table was seen
    config.write_text("[server]\nsocket = 5\n")
    with pytest.raises(ConfigError, match="server.socket: expected a path"):
        socket_of(config)
    with pytest.raises(ConfigError, match="cannot read"):
        socket_of(tmp_path / "absent.toml")


async def test_a_reload_says_which_changes_wait_for_a_restart(start_daemon):
    # The listeners and the database are bound and opened at start: a reload that
    # changes them applies the rest and says so, in its answer and the log, rather
    # than "configuration reloaded" as if the new listener were up.
    daemon = await start_daemon(GOOD)
    text = daemon.config.read_text()
    daemon.config.write_text(text + '\n[ingest]\nlisten = "127.0.0.1:1"\n')

    def cli() -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "runhook", "reload",
                               "--config", str(daemon.config)],
                              check=False, capture_output=True, text=True, timeout=60)

    reload = await asyncio.to_thread(cli)
    assert reload.returncode == 0, reload.stderr
    assert reload.stdout == ("configuration reloaded; [ingest].listen changed: "
                             "takes effect at restart\n")
    assert ("configuration reloaded: 1 automation, 0 integrations; [ingest].listen "
            "changed: takes effect at restart") in daemon.log_text()
    # Still true at the next reload (the listener is still the one bound at start),
    # with a second start-only change; an automation added meanwhile is applied.
    daemon.config.write_text(text.replace('socket = "', 'socket_mode = 0o600\nsocket = "')
                             + GOOD.replace('"kept"', '"added"')
                             + '\n[ingest]\nlisten = "127.0.0.1:1"\n')
    async with daemon.client() as client:
        answer = await client.request({"type": "command.reload"})
        status = await client.request({"type": "query.status"})
    assert answer == {"ok": True, "reloaded": True,
                      "restart": ["[server].socket_mode", "[ingest].listen"]}
    assert [a["name"] for a in status["status"]["automations"]] == ["kept", "added"]
    # Back to what it started with: nothing waits.
    daemon.config.write_text(text)
    assert (await asyncio.to_thread(cli)).stdout == "configuration reloaded\n"


async def test_a_refused_reload_says_what_check_config_says(start_daemon):
    # Two problems, one structural (an unknown field stops msgspec) and one only the
    # build sees: the refusal lists both, each with the file's path, as check-config.
    daemon = await start_daemon(GOOD)
    text = daemon.config.read_text().replace("[server]", '[server]\nhtp = "x"') \
        .replace('scope = "project:acme/vision"', 'scope = "projects:acme/vision"')
    daemon.config.write_text(text)
    checked = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "runhook", "check-config", str(daemon.config)],
        check=False, capture_output=True, text=True, timeout=60)
    lines = checked.stdout.splitlines()
    assert lines[-1] == "2 problems found", checked.stdout
    assert lines[0] == f"{daemon.config}: server: object contains unknown field `htp`; " \
                       "did you mean 'http'?"
    assert lines[1].startswith(f"{daemon.config}: automations[0].scope: expected ")
    async with daemon.client() as client:
        answer = await client.request({"type": "command.reload"})
    assert answer["error"].splitlines() == [
        "reload refused, the running configuration stays:", *lines[:-1]]
    await still_serving(daemon)
