"""The one timer structure of a scope actor: a heap with lazy deletion (pure).

Every deadline of the scope (heartbeats, stalls, groups settling, digests closing) is an entry here,
never a task per run. An event never pushes: a deadline only moves later as a run
speaks, so the entry already queued wakes the actor early, and the owner checks on
pop whether the deadline still stands (and queues the real one if not). A push
happens only when a deadline would come before the one queued for its key. When the
stale entries outnumber the live ones the heap is rebuilt from the live ones, so a run
flapping running <-> finished cannot grow it (amortised O(log n) per call)."""

from __future__ import annotations

import heapq

# What a timer is for; the key is a run id, or a group name for SETTLE.
BEAT = "beat"
STALL = "stall"
SETTLE = "settle"
DIGEST = "digest"  # a digest window closing (evaluate/digests.py); its key is the window's id

Key = tuple[str, str]  # (kind, run id, group or digest id)

# Below this many heap entries a rebuild is not worth its cost, whatever is stale.
COMPACT_FLOOR = 64


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
        if queued is not None:
            self._compact()  # the entry for `queued` is stale now

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
        """Forget (kind, key); its heap entry is dropped lazily, or by a rebuild."""
        if self._queued.pop((kind, key), None) is not None:
            self._compact()

    def heap_size(self) -> int:
        """Entries held, stale ones included (what the memory bound is about)."""
        return len(self._heap)

    def _compact(self) -> None:
        # A rebuild costs O(n) and happens only once stale entries are more than half
        # the heap, i.e. after at least n/2 calls that each made one stale: O(1) amortised.
        heap = self._heap
        if len(heap) > COMPACT_FLOOR and len(heap) > 2 * len(self._queued):
            heap[:] = [(deadline, kind, key) for (kind, key), deadline in self._queued.items()]
            heapq.heapify(heap)
