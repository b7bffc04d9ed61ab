"""Flag: an event that is set, cleared and set again, on anyio's Event (which, once set, stays set)."""

from __future__ import annotations

import anyio


class Flag:
    """Waited on by tasks, set by anyone, cleared by a waiter before it waits again.
    A wait on a clear flag waits on an anyio.Event made for it (one per wait, not per
    set or clear); set() wakes every task waiting then, and a later clear() does not
    take that back. Like asyncio's Event, a wait on a set flag returns at once."""

    __slots__ = ("_event", "_set")

    def __init__(self, is_set: bool = False) -> None:
        self._set = is_set
        self._event: anyio.Event | None = None

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        self._set = True
        if self._event is not None:
            self._event.set()
            self._event = None

    def clear(self) -> None:
        self._set = False

    async def wait(self) -> None:
        if self._set:
            return
        if self._event is None:
            self._event = anyio.Event()
        await self._event.wait()
