"""One chunk of request lines admitted: decoded, deduplicated by id, routed to scope actors."""

from __future__ import annotations

import asyncio
import time

import anyio

from runhook.core import constants
from runhook.core.acks import Ticket
from runhook.core.events import Event
from runhook.core.executions import event_timestamp
from runhook.evaluate.scope import ScopeActor, Scopes
from runhook.ingest import protocol
from runhook.ingest.idempotency import EVERY_SCOPE, Claim, Key, RecentIds
from runhook.ingest.protocol import BadLine, Query
from runhook.store.database import Store, Write
from runhook.store.statements import INSERT_EVENT_ID


class Copy:
    """The answer to an event whose id is being evaluated elsewhere (in this chunk or
    another connection's): it waits for those claims, and for this chunk's commit
    when some of its scopes were still new. ok/duplicate only if all went through."""

    __slots__ = ("claims", "line_no", "routed")

    def __init__(self, line_no: int, claims: list[Claim], routed: bool) -> None:
        self.line_no = line_no
        self.claims = claims
        self.routed = routed


class Answers:
    """The answers to one chunk of lines, in line order: a ready line, a query to run
    when its turn comes, the line number of an event waiting for the chunk's commit,
    or a Copy. `claims` are the (id, scope) keys this chunk took, with their lines."""

    __slots__ = ("claims", "results", "ticket")

    def __init__(self) -> None:
        self.results: list[bytes | int | Query | Copy] = []
        self.ticket: Ticket | None = None
        self.claims: list[tuple[Key, int]] = []


class Admission:
    """Turns lines into answers-to-be and actor batches. Each scope records an
    event's id in the commit of what the event caused there (DESIGN §8): a line
    that failed, or whose commit failed, leaves its id free for the retry."""

    def __init__(self, scopes: Scopes, store: Store) -> None:
        self._scopes = scopes
        self._store = store
        self.recent_ids = RecentIds(store)
        self.events_received: dict[str, int] = {}
        self.lines_rejected = 0

    def too_long(self, line_no: int) -> bytes:
        self.lines_rejected += 1
        return protocol.error_line(
            line_no, f"line is over {constants.MAX_LINE_BYTES} bytes (1 MiB); refused")

    def _decode(self, first_line: int, lines: list[bytes], now: float
                ) -> list[tuple[int, bytes | Query | tuple[Event, float]]]:
        """Each request line decoded; lines that are not events answered in place."""
        decoded: list[tuple[int, bytes | Query | tuple[Event, float]]] = []
        for line_no, line in enumerate(lines, first_line):
            if len(line) > constants.MAX_LINE_BYTES:
                decoded.append((line_no, self.too_long(line_no)))
                continue
            if not line.strip():
                continue  # blank lines are not requests
            try:
                request = protocol.decode(line)
                if isinstance(request, Query):
                    decoded.append((line_no, request))
                    continue
                try:
                    stamp = event_timestamp(request, now)
                except (ValueError, OverflowError) as exc:
                    raise BadLine(f"field `time`: {exc}") from None
            except BadLine as exc:
                self.lines_rejected += 1
                decoded.append((line_no, protocol.error_line(line_no, str(exc))))
                continue
            decoded.append((line_no, (request, stamp)))
        return decoded

    async def chunk(self, first_line: int, lines: list[bytes]) -> Answers:
        """A chunk's events go to the actors as one batch per actor: a chunk costs
        one ticket and one write per actor, not one per line."""
        out = Answers()
        now = time.time()
        horizon = now - constants.IDEMPOTENCY_WINDOW_S
        decoded = self._decode(first_line, lines, now)
        targets = self._scopes.targets
        routed: list[tuple[int, Event, float, list[ScopeActor]]] = []
        wanted: list[Key] = []
        for line_no, item in decoded:
            if isinstance(item, tuple):
                actors = targets(item[0])
                routed.append((line_no, item[0], item[1], actors))
                if item[0].id is not None:
                    wanted.extend(_keys(item[0].id, actors))
        # One lookup for the ids that memory does not know.
        accepted = await self.recent_ids.accepted(wanted, horizon) if wanted else set()
        ticket = Ticket(asyncio.get_running_loop().create_future(), 0)
        batches: dict[ScopeActor, list[tuple[Event, float, int]]] = {}
        unscoped: list[tuple[str, str, float]] = []  # ids of events no scope took
        events = iter(routed)
        for line_no, item in decoded:
            if not isinstance(item, tuple):
                out.results.append(item)
                continue
            _, event, event_time, actors = next(events)
            kind = str(event.__struct_config__.tag)
            self.events_received[kind] = self.events_received.get(kind, 0) + 1
            if event.id is None:
                out.results.append(line_no if actors else protocol.OK)
                take = actors
            else:
                keys, claims = self._claim(event.id, actors, accepted, horizon, now)
                for key in keys:
                    self.recent_ids.claim(key, Claim(ticket, line_no), now)
                    out.claims.append((key, line_no))
                if claims:
                    out.results.append(Copy(line_no, claims, bool(keys)))
                elif keys:
                    out.results.append(line_no)
                else:
                    out.results.append(protocol.OK_DUPLICATE)
                if keys and not actors:
                    unscoped.append((event.id, EVERY_SCOPE, now))
                take = [a for a in actors if (event.id, a.scope) in keys]
            for actor in take:
                batch = batches.get(actor)
                if batch is None:
                    batch = batches[actor] = []
                batch.append((event, event_time, line_no))
        ticket.pending = len(batches) + (1 if unscoped else 0)
        if ticket.pending:
            out.ticket = ticket
            if unscoped:
                await self._store.submit(Write([(INSERT_EVENT_ID, unscoped)], ticket.done))
            for actor, batch in batches.items():
                try:
                    # No yield to the loop per send while there is room (up to 100
                    # actors a chunk); a full inbox makes us wait: backpressure.
                    actor.inbox.send_nowait((batch, ticket))
                except anyio.WouldBlock:
                    await actor.inbox.send((batch, ticket))
        return out

    def _claim(self, event_id: str, actors: list[ScopeActor], accepted: set[Key],
               horizon: float, now: float) -> tuple[list[Key], list[Claim]]:
        """The keys of this event still to evaluate, and the claims of other copies
        of it to wait for. An id recorded for every scope covers all of them."""
        if (event_id, EVERY_SCOPE) in accepted:
            return [], []
        take: list[Key] = []
        claims: list[Claim] = []
        for key in _keys(event_id, actors):
            if key in accepted or self.recent_ids.committed_here(key, horizon):
                continue
            claim = self.recent_ids.pending(key, horizon)
            if claim is not None:
                claims.append(claim)
            else:
                take.append(key)
        return take, claims

    def settle(self, answers: Answers) -> None:
        """After the chunk's ticket resolved: its keys are accepted, or free again."""
        ticket = answers.ticket
        if not answers.claims or ticket is None:
            return
        error = ticket.future.result()
        ok = [key for key, line_no in answers.claims
              if error is None and line_no not in ticket.errors]
        self.recent_ids.committed(ok)
        if len(ok) < len(answers.claims):
            self.recent_ids.release(key for key, line_no in answers.claims
                                    if error is not None or line_no in ticket.errors)


def _keys(event_id: str, actors: list[ScopeActor]) -> list[Key]:
    return [(event_id, actor.scope) for actor in actors] or [(event_id, EVERY_SCOPE)]


async def answer_copy(copy: Copy, ticket: Ticket | None) -> bytes:
    """A Copy's answer once every claim it waits for (and its own chunk) resolved."""
    problems = []
    for claim in copy.claims:
        await asyncio.shield(claim.ticket.future)
        if (error := claim.error()) is not None:
            problems.append(error)
    if copy.routed and ticket is not None:
        error = await ticket.future or ticket.errors.get(copy.line_no)
        if error is not None:
            problems.append(error)
    if problems:
        return protocol.error_line(copy.line_no, f"not accepted: {problems[0]}; send it again")
    return protocol.OK if copy.routed else protocol.OK_DUPLICATE
