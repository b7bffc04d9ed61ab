"""The one daemon lifecycle (app/lifecycle.py): layers entered bottom up, each in a
task group of its own, left top down; a part stops while its tasks still run, and
the layer below stops only once the layer above has been cancelled."""

from __future__ import annotations

from collections.abc import Sequence

import anyio
import anyio.lowlevel
import pytest
from anyio.abc import TaskGroup, TaskStatus

from runhook.app import lifecycle
from runhook.app.lifecycle import Part, Task


class Recorded:
    """A part whose start runs one task in its layer's group; it writes down when it
    starts, stops, and when its task is cancelled."""

    def __init__(self, name: str, log: list[str], fail: bool = False) -> None:
        self.name = name
        self.log = log
        self.fail = fail
        self.running = False
        self.up = anyio.Event()

    async def start(self, tg: TaskGroup) -> None:
        if self.fail:
            raise RuntimeError(f"{self.name} cannot start")
        self.log.append(f"start {self.name}")
        tg.start_soon(self._task)

    async def _task(self) -> None:
        self.running = True
        self.up.set()
        try:
            await anyio.sleep_forever()
        finally:
            self.running = False
            self.log.append(f"{self.name} cancelled")

    async def stop(self) -> None:
        # Its task has not been cancelled yet: stopping is graceful, not torn down.
        self.log.append(f"stop {self.name}" + (" (running)" if self.running else ""))


async def test_layers_start_bottom_up_and_stop_top_down_each_before_its_group_is_cancelled():
    log: list[str] = []
    writer, scopes = Recorded("writer", log), Recorded("scopes", log)
    socket, console = Recorded("socket", log), Recorded("console", log)

    def front() -> Sequence[Part]:
        # Made once the layers below have started (the socket needs the scopes).
        log.append(f"make front ({'scopes up' if 'start scopes' in log else 'too early'})")
        return [socket, console]

    async def serve() -> None:
        for part in (writer, scopes, socket, console):
            await part.up.wait()
        log.append("serve")

    await lifecycle.run([lambda: [writer], lambda: [scopes], front], serve)
    assert log[:6] == ["start writer", "start scopes", "make front (scopes up)",
                       "start socket", "start console", "serve"]
    # The top layer's parts stop in reverse, then its group (both tasks) is cancelled,
    # and only then does the layer below stop.
    assert log[6:8] == ["stop console (running)", "stop socket (running)"]
    assert set(log[8:10]) == {"socket cancelled", "console cancelled"}
    assert log[10:] == ["stop scopes (running)", "scopes cancelled",
                        "stop writer (running)", "writer cancelled"]


async def test_a_part_that_cannot_start_unwinds_the_layers_below_without_serving():
    log: list[str] = []
    writer, socket = Recorded("writer", log), Recorded("socket", log, fail=True)
    served = False

    async def serve() -> None:
        nonlocal served
        served = True

    with pytest.raises(BaseException) as raised:
        await lifecycle.run([lambda: [writer], lambda: [socket]], serve)
    assert "socket cannot start" in repr(raised.value)
    # Nothing stopped gracefully (the daemon never was ready): the writer's task was
    # cancelled with its group.
    assert not served
    assert log == ["start writer", "writer cancelled"]


async def test_a_ready_task_is_running_before_the_next_part_starts():
    log: list[str] = []
    ran = anyio.Event()

    async def listener(*, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        # Not ready at once: a part started after it without waiting would come first.
        await anyio.lowlevel.checkpoint()
        log.append("listening")
        task_status.started()
        await anyio.sleep_forever()

    async def background() -> None:
        ran.set()
        await anyio.sleep_forever()

    async def serve() -> None:
        await ran.wait()
        log.append("serve")

    await lifecycle.run([lambda: [Task("listener", listener, ready=True),
                                  Recorded("console", log), Task("other", background)]],
                        serve)
    assert log == ["listening", "start console", "serve", "stop console (running)",
                   "console cancelled"]
