"""The typed command room: functions from request Structs to answer Structs, a refusal
raised, and the one edge encoding that the socket and HTTPS send."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import msgspec
import pytest

from runhook.ingest import commands, protocol
from runhook.ingest.protocol import ConsoleRotate, Enable, Reload


class Actor:
    def __init__(self, disabled: str | None) -> None:
        self.disabled = disabled
        self.enabled = False

    def enable(self) -> None:
        self.enabled = True

    async def test(self, payload: str | None) -> dict[str, Any]:
        return {"status": 204, "execution_id": "ex_1", "payload": payload}


class Deliveries:
    def __init__(self) -> None:
        self.actors = {"hook": Actor("410 Gone")}


class Store:
    def __init__(self) -> None:
        self.committed: list[object] = []

    async def commit(self, write: object) -> None:
        self.committed.append(write)


class Login:
    def __init__(self, path: Path, fails: bool) -> None:
        self.path = path
        self.fails = fails
        self.rotated = 0

    def rotate(self) -> None:
        if self.fails:
            raise PermissionError(13, "Permission denied")
        self.rotated += 1


class Daemon:
    """What the commands read of a daemon, and nothing more."""

    shared_commands = None  # one machine's: the commands act on this daemon's state

    def __init__(self, problems: list[str], login: Login | None = None) -> None:
        self.settings = SimpleNamespace(source="runhook.toml")
        self.store = Store()
        self.deliveries = Deliveries()
        self.problems = problems
        self._login = login

    @property
    def console_login(self) -> Login | None:
        return self._login

    async def reload(self) -> list[str]:
        return self.problems


async def test_a_command_answers_a_struct_and_the_edge_encodes_it_once() -> None:
    daemon = Daemon([])
    answer = await commands.enable(Enable(integration="hook"), daemon)  # type: ignore[arg-type]
    assert answer == commands.Enabled(integration="hook", was_disabled="410 Gone")
    assert daemon.deliveries.actors["hook"].enabled
    assert len(daemon.store.committed) == 1
    assert commands.encode(answer) == \
        b'{"ok":true,"integration":"hook","was_disabled":"410 Gone"}\n'
    # The socket's answer is the same bytes, through the same function.
    again = await commands.answer(Enable(integration="hook"), daemon)  # type: ignore[arg-type]
    assert again == b'{"ok":true,"integration":"hook","was_disabled":"410 Gone"}\n'


async def test_a_refusal_is_raised_and_becomes_the_edge_refusal_line() -> None:
    daemon = Daemon(["automation x: unknown integration y"])
    with pytest.raises(commands.Refused, match="reload refused, the running configuration "
                                               "stays:\nrunhook.toml: automation x: unknown "
                                               "integration y"):
        await commands.reload(daemon)  # type: ignore[arg-type]
    line = await commands.answer(Reload(), daemon)  # type: ignore[arg-type]
    assert msgspec.json.decode(line) == {
        "ok": False,
        "error": "reload refused, the running configuration stays:\nrunhook.toml: "
                 "automation x: unknown integration y"}
    with pytest.raises(commands.Refused, match="no integration 'nope'"):
        await commands.test(protocol.TestIntegration(integration="nope"), daemon)  # type: ignore[arg-type]


async def test_test_and_rotate_answer_their_structs(tmp_path: Path) -> None:
    login = Login(tmp_path / "login", fails=False)
    daemon = Daemon([], login)
    tested = await commands.test(protocol.TestIntegration(integration="hook", payload="hi"),
                                 daemon)  # type: ignore[arg-type]
    assert tested.test == {"status": 204, "execution_id": "ex_1", "payload": "hi"}
    rotated = commands.rotate(daemon)  # type: ignore[arg-type]
    assert rotated == commands.Rotated(login_file=str(tmp_path / "login"))
    assert login.rotated == 1
    assert await commands.answer(ConsoleRotate(), daemon) == (  # type: ignore[arg-type]
        b'{"ok":true,"login_file":"' + str(tmp_path / "login").encode() + b'"}\n')
    login.fails = True
    with pytest.raises(commands.Refused, match="Permission denied; the old token stays"):
        commands.rotate(daemon)  # type: ignore[arg-type]
    with pytest.raises(commands.Refused, match=r"the console is off \(server.http is empty\)"):
        commands.rotate(Daemon([]))  # type: ignore[arg-type]


def test_the_console_flash_reads_the_typed_redelivery() -> None:
    answer = commands.Redelivered(redelivered=["ex_1"], left_out={},
                                  notes={"ex_1": "sent now anyway"})
    assert commands.notes_of(answer) == "; sent now anyway"
