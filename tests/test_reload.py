"""Reload with a file that cannot load: SIGHUP and `command.reload` both refuse it,
log why, and keep the daemon running on the configuration it had."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import Daemon

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
        f"reload refused, the running configuration stays: {reason}"), answer
    await still_serving(daemon)
    assert f"reload refused, keeping the running configuration: {reason}" in daemon.log_text()
    assert "Traceback" not in daemon.log_text()
