"""The one timer structure of a scope actor: a heap with lazy deletion (pure).

Every deadline of the scope (heartbeats, stalls, groups settling, digests closing) is an entry here,
never a task per run. An event never pushes: a deadline only moves later as a run
speaks, so the entry already queued wakes the actor early, and the owner checks on
pop whether the deadline still stands (and queues the real one if not). A push
happens only when a deadline would come before the one queued for its key."""

from __future__ import annotations

import heapq

# What a timer is for; the key is a run id, or a group name for SETTLE.
BEAT = "beat"
STALL = "stall"
SETTLE = "settle"
DIGEST = "digest"  # a digest window closing (evaluate/digests.py); its key is the window's id

Key = tuple[str, str]  # (kind, run id, group or digest id)


class Timers:
    __slots__ = ("_heap", "_queued")

    def __init__(self) -> None:
        self._heap: list[tuple[float, str, str]] = []
        # The earliest deadline queued per key; a heap entry with another deadline
        # for its key is stale and dropped when it reaches the top.
        self._queued: dict[Key, float] = {}

    def __len__(self) -> int:
        return len(self._queued)

    def arm(self, kind: str, key: str, deadline: float) -> None:
        """Wake at `deadline` at the latest for (kind, key)."""
        queued = self._queued.get((kind, key))
        if queued is not None and queued <= deadline:
            return  # an earlier wake is queued; its owner re-checks then
        self._queued[(kind, key)] = deadline
        heapq.heappush(self._heap, (deadline, kind, key))

    def next(self) -> float | None:
        """The earliest live deadline, or None."""
        heap = self._heap
        while heap:
            deadline, kind, key = heap[0]
            if self._queued.get((kind, key)) == deadline:
                return deadline
            heapq.heappop(heap)  # superseded by an earlier entry that already popped
        return None

    def due(self, now: float) -> list[Key]:
        """Pop every live entry whose deadline is at or before `now`, earliest first."""
        out: list[Key] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            deadline, kind, key = heapq.heappop(heap)
            if self._queued.get((kind, key)) == deadline:
                del self._queued[(kind, key)]
                out.append((kind, key))
        return out

    def cancel(self, kind: str, key: str) -> None:
        """Forget (kind, key); its heap entry is dropped lazily."""
        self._queued.pop((kind, key), None)
