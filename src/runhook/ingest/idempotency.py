"""Client idempotency ids: which scopes accepted which ids in the last 24 hours."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable

from runhook.core import constants
from runhook.core.acks import Key, Ticket
from runhook.store.database import Store

# EVERY_SCOPE stands for an event that reached no scope, and for ids recorded
# before ids were kept per scope.
EVERY_SCOPE = "*"


class Claim:
    """A key taken by a chunk whose commit is outstanding: a copy of the same event
    arriving meanwhile waits for that outcome instead of being answered at once."""

    __slots__ = ("key", "line_no", "ticket")

    def __init__(self, ticket: Ticket, line_no: int, key: Key) -> None:
        self.ticket = ticket
        self.line_no = line_no
        self.key = key

    def error(self) -> str | None:
        """Once the ticket resolved: why the key was not recorded, or None."""
        if self.ticket.error is None and self.key not in self.ticket.failed:
            return None
        return self.ticket.line_error(self.line_no) or "its commit failed"


class RecentIds:
    """Accepted keys live in the database (event_ids, purged after 24 h), written
    by each scope in the commit of what the event caused there. Memory holds the
    claims not yet committed and a bounded set of the latest committed keys, so a
    quick retry is answered without a lookup and memory does not grow with the
    event rate; any other id costs one query per chunk."""

    def __init__(self, store: Store, memory: int = constants.RECENT_IDS_IN_MEMORY) -> None:
        self._store = store
        self._memory = memory
        self._pending: dict[Key, tuple[Claim, float]] = {}
        self._recent: OrderedDict[Key, float] = OrderedDict()  # committed, newest last

    def __len__(self) -> int:
        return len(self._pending) + len(self._recent)

    def committed_here(self, key: Key, horizon: float) -> bool:
        """Known in memory as committed since `horizon` (the database may know more)."""
        at = self._recent.get(key)
        return at is not None and at >= horizon

    def pending(self, key: Key, horizon: float) -> Claim | None:
        found = self._pending.get(key)
        return found[0] if found is not None and found[1] >= horizon else None

    async def accepted(self, keys: Iterable[Key], horizon: float) -> set[Key]:
        """Those of `keys` committed since `horizon`, plus every other (id, scope)
        the database holds for an id that memory could not answer for (one query
        for the lot)."""
        found: set[Key] = set()
        unknown: set[str] = set()
        for key in keys:
            if self.committed_here(key, horizon):
                found.add(key)
            elif key not in self._pending:
                unknown.add(key[0])
        if unknown:
            found |= await self._store.seen_event_ids(sorted(unknown), horizon)
        return found

    def claim(self, key: Key, claim: Claim, now: float) -> None:
        self._pending[key] = (claim, now)

    def committed(self, keys: Iterable[Key]) -> None:
        for key in keys:
            found = self._pending.pop(key, None)
            if found is not None:
                self._recent[key] = found[1]
                self._recent.move_to_end(key)
        while len(self._recent) > self._memory:
            self._recent.popitem(last=False)  # the database still has it

    def release(self, keys: Iterable[Key]) -> None:
        """Not accepted (the line failed, or its commit did): a retry is evaluated."""
        for key in keys:
            self._pending.pop(key, None)
