"""Client idempotency ids: which ones were accepted in the last 24 hours."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable

from runhook import constants
from runhook.store import Store


class RecentIds:
    """Accepted ids live in the database (event_ids, purged after 24 h). Memory
    holds only the claims not yet committed and a bounded set of the latest
    committed ids, so a quick retry is answered without a lookup and memory does
    not grow with the event rate; any other id costs one query per chunk."""

    def __init__(self, store: Store, memory: int = constants.RECENT_IDS_IN_MEMORY) -> None:
        self._store = store
        self._memory = memory
        self._pending: dict[str, float] = {}  # claimed by a chunk not yet committed
        self._recent: OrderedDict[str, float] = OrderedDict()  # committed, newest last

    def __len__(self) -> int:
        return len(self._pending) + len(self._recent)

    def seen(self, event_id: str, horizon: float) -> bool:
        """Known here as accepted since `horizon` (the database may know more)."""
        at = self._pending.get(event_id)
        if at is None:
            at = self._recent.get(event_id)
        return at is not None and at >= horizon

    async def accepted(self, ids: Iterable[str], horizon: float) -> set[str]:
        """Of `ids`, those accepted since `horizon`, from memory or the database."""
        found = {i for i in ids if self.seen(i, horizon)}
        unknown = [i for i in ids if i not in found]
        if unknown:
            found |= await self._store.seen_event_ids(unknown, horizon)
        return found

    def claim(self, event_id: str, now: float) -> None:
        self._pending[event_id] = now

    def committed(self, ids: Iterable[str]) -> None:
        for event_id in ids:
            at = self._pending.pop(event_id, None)
            if at is not None:
                self._recent[event_id] = at
                self._recent.move_to_end(event_id)
        while len(self._recent) > self._memory:
            self._recent.popitem(last=False)  # the database still has it

    def release(self, ids: Iterable[str]) -> None:
        """The chunk failed: its events were not accepted, a retry must be evaluated."""
        for event_id in ids:
            self._pending.pop(event_id, None)
