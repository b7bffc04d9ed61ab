"""The one daemon lifecycle: layers of parts, each layer in a task group of its own,
entered bottom up and left top down, so nothing runs without what it writes to."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, Protocol

import anyio
from anyio.abc import TaskGroup


class Part(Protocol):
    """One piece of the daemon. Every task it runs is in its layer's group."""

    async def start(self, tg: TaskGroup) -> None:
        """Start the part's tasks in `tg`; return once the layers above may use it."""

    async def stop(self) -> None:
        """Finish gracefully what it holds; the layer's group is cancelled once every
        part of the layer has stopped."""


# A layer's parts are made when it is entered: they may use the layers below, which
# have started by then (the scope actors exist before the socket that feeds them).
Layer = Callable[[], Sequence[Part]]


async def run(layers: Sequence[Layer], serve: Callable[[], Awaitable[None]]) -> None:
    """Start `layers` in order (each layer's parts in order), run `serve` inside them
    all (until the daemon is told to stop), then stop them in reverse: a layer's
    parts in reverse, then its group cancelled, then the layer below."""
    if not layers:
        await serve()
        return
    async with anyio.create_task_group() as tg:
        parts = layers[0]()
        for part in parts:
            await part.start(tg)
        await run(layers[1:], serve)
        for part in reversed(parts):
            await part.stop()
        tg.cancel_scope.cancel()


class Task:
    """A part that is one background task, cancelled with its layer. `ready`: the
    task reports when it is ready (`task_status.started()`), and its layer waits."""

    def __init__(self, name: str, function: Callable[..., Coroutine[Any, Any, Any]], *args: Any,
                 ready: bool = False) -> None:
        self.name = name
        self._function = function
        self._args = args
        self._ready = ready

    async def start(self, tg: TaskGroup) -> None:
        if self._ready:
            await tg.start(self._function, *self._args, name=self.name)
        else:
            tg.start_soon(self._function, *self._args, name=self.name)

    async def stop(self) -> None:
        pass
