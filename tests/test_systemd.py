"""sd_notify messages from the real daemon, the watchdog rule, and the unit file."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from runhook.systemd import watchdog_interval

ROOT = Path(__file__).resolve().parent.parent


class Notifications:
    """A real datagram socket set as NOTIFY_SOCKET; messages are awaited, not slept for."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.setblocking(False)
        self.path = path
        self.seen: list[str] = []

    async def until(self, field: str, timeout: float = 30.0) -> str:
        loop = asyncio.get_running_loop()
        while True:
            message = (await asyncio.wait_for(loop.sock_recv(self.sock, 4096), timeout)).decode()
            self.seen.append(message)
            if field in message.split("\n"):
                return message


def test_watchdog_rule():
    assert watchdog_interval({}, 10) is None
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}, 10) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "10"}, 10) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "11"}, 10) is None
    assert watchdog_interval({"WATCHDOG_USEC": "0"}, 10) is None


async def test_ready_watchdog_reload_stopping(short_dir):
    notify = Notifications(short_dir / "n.sock")
    config = short_dir / "runhook.toml"
    base = f"""
[server]
socket = "{short_dir}/ev.sock"
http = ""
database = "{short_dir}/r.db"
"""
    automation = """
[[automations]]
name = "{name}"
scope = "project:acme/vision"
event = {{ kind = "CREATE_ARTIFACT" }}
action = {{ kind = "none" }}
"""
    config.write_text(base + automation.format(name="first"))
    env = {**os.environ, "NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "400000"}
    log = short_dir / "log"
    with log.open("wb") as out:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "runhook", "serve", "--config", str(config),
            env=env, stdout=out, stderr=out)
    try:
        ready = await notify.until("READY=1")
        assert "STATUS=1 automation, 0 integrations" in ready
        await notify.until("WATCHDOG=1")  # 0.4 s watchdog: pings every 0.2 s
        await notify.until("WATCHDOG=1")

        config.write_text(base + automation.format(name="first") + automation.format(name="second"))
        process.send_signal(signal.SIGHUP)
        reloading = await notify.until("RELOADING=1")
        assert any(line.startswith("MONOTONIC_USEC=") for line in reloading.split("\n"))
        assert "STATUS=2 automations, 0 integrations" in await notify.until("READY=1")

        config.write_text(base + "[[automations]]\nname = 1\n")  # bad: keeps the running one
        process.send_signal(signal.SIGHUP)
        await notify.until("RELOADING=1")
        kept = await notify.until("READY=1")
        assert "reload refused" in kept
        refused = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-m", "runhook", "reload",
                             "--socket", f"{short_dir}/ev.sock"],
            check=False, capture_output=True, text=True, timeout=30)
        assert refused.returncode == 1
        assert "automations[0].name: expected `str`, got `int`" in refused.stderr
        status = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-m", "runhook", "status", "--json",
                             "--socket", f"{short_dir}/ev.sock"],
            check=False, capture_output=True, text=True, timeout=30)
        assert '"second"' in status.stdout

        process.send_signal(signal.SIGTERM)
        await notify.until("STOPPING=1")
        assert await asyncio.wait_for(process.wait(), 30) == 0
    finally:
        if process.returncode is None:
            process.kill()
        notify.sock.close()
    text = log.read_text()
    assert "reload refused, keeping the running configuration: automations[0].name" in text


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_unit_file_verifies(tmp_path):
    unit = (ROOT / "systemd" / "runhook.service").read_text()
    # The unit names the installed path; point it at this checkout's command to verify.
    runhook = Path(sys.executable).with_name("runhook")
    (tmp_path / "runhook.service").write_text(
        unit.replace("/usr/local/bin/runhook", str(runhook)))
    result = subprocess.run(["systemd-analyze", "verify", str(tmp_path / "runhook.service")],
                            check=False, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == ""
