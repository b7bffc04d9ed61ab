"""Request lines admitted: decoded, deduplicated by id and scope, routed to scope actors."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from functools import partial
from typing import Any

from runhook.core import constants
from runhook.core.acks import Key, Ticket, id_place, unscoped_place
from runhook.core.events import Event
from runhook.core.executions import event_timestamp
from runhook.evaluate.inbox import Batch
from runhook.evaluate.routing import Router, Target
from runhook.ingest import protocol
from runhook.ingest.idempotency import EVERY_SCOPE, Claim, RecentIds
from runhook.ingest.protocol import BadLine, Query
from runhook.store.database import Store, Write
from runhook.store.statements import INSERT_EVENT_ID

log = logging.getLogger("runhook.ingress")

# A decoded line: its ready answer (an error), a query or command, or an event.
Request = bytes | Query | Event


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
    """The answers to a run of event lines, in line order: a ready line, the line
    number of an event waiting for the ticket, or a Copy. A range: every line
    waits for the ticket (the hot path builds nothing a line)."""

    __slots__ = ("copies", "results", "ticket")

    def __init__(self, results: Sequence[bytes | int | Copy] | None = None) -> None:
        self.results: Sequence[bytes | int | Copy] = [] if results is None else results
        self.ticket: Ticket | None = None
        self.copies = False  # some result is a Copy


class Admission:
    """Turns lines into answers-to-be and actor batches. Each scope records an
    event's id in the commit of what the event caused there (see scope.py): a
    line that failed, or whose commit failed, leaves its id free for the retry."""

    def __init__(self, router: Router[Any], store: Store) -> None:
        """`router`: the scope actors (Scopes), or the cluster's partitions (Publisher)."""
        self._router = router
        self._store = store
        self.recent_ids = RecentIds(store)
        self._received: dict[type, int] = {}  # by event class: no name built per event
        self.lines_rejected = 0

    @property
    def events_received(self) -> dict[str, int]:
        """Events accepted, by type."""
        return {str(kind.__struct_config__.tag): n  # type: ignore[attr-defined]
                for kind, n in self._received.items()}

    def too_long(self, line_no: int) -> bytes:
        self.lines_rejected += 1
        return protocol.error_line(
            line_no, f"line is over {constants.MAX_LINE_BYTES} bytes (1 MiB); refused")

    def decode(self, first_line: int, lines: list[bytes]) -> tuple[list[int], list[Request]]:
        """Each request line decoded (an error line for a bad one) with its number;
        blank lines are not requests and get nothing."""
        numbers: list[int] = []
        requests: list[Request] = []
        for line_no, line in enumerate(lines, first_line):
            if len(line) > constants.MAX_LINE_BYTES:
                request: Request = self.too_long(line_no)
            elif not line.strip():
                continue
            else:
                try:
                    request = protocol.decode(line)
                except BadLine as exc:
                    self.lines_rejected += 1
                    request = protocol.error_line(line_no, str(exc))
            numbers.append(line_no)
            requests.append(request)
        return numbers, requests

    async def admit(self, numbers: Sequence[int], requests: Sequence[Request],
                    now: float) -> Answers:
        """Route a run of decoded event lines: one batch per actor, so the run costs
        one ticket and one write per actor, not one per line."""
        plain = self._admit_without_ids(numbers, requests, now)
        if plain is None:
            return await self._admit(numbers, requests, now)
        answers, batches = plain
        if answers.ticket is not None:
            await self._router.hand(batches, answers.ticket)
        return answers

    def _stamp(self, line_no: int, event: Event, now: float) -> float | bytes:
        """The event's time, or the error line when its `time` is out of range."""
        try:
            return event_timestamp(event, now)
        except (ValueError, OverflowError) as exc:
            self.lines_rejected += 1
            return protocol.error_line(line_no, f"field `time`: {exc}")

    def _admit_without_ids(self, numbers: Sequence[int], requests: Sequence[Request],
                           now: float) -> tuple[Answers, dict[Target, Batch]] | None:
        """The hot path, for a run in which no event has an id (nothing to claim, no
        lookup): one pass, nothing built per line but its place in a batch. None
        when an event has an id: the general path then takes the whole run.
        While every line so far went to some actor, the answers are `numbers` as
        they are (each waits for the ticket): no list is built a line."""
        out = Answers()
        results: list[bytes | int | Copy] | None = None
        route = self._router.route
        received: dict[type, int] = {}
        batches: dict[Target, Batch] = {}
        for index, (line_no, event) in enumerate(zip(numbers, requests, strict=True)):
            if event.__class__ is bytes:
                if results is None:
                    results = list(numbers[:index])
                results.append(event)
                continue
            if event.id is not None:  # type: ignore[union-attr]
                return None
            stamp: float | bytes = now
            if event.time is not None:  # type: ignore[union-attr]
                stamp = self._stamp(line_no, event, now)  # type: ignore[arg-type]
                if stamp.__class__ is bytes:
                    if results is None:
                        results = list(numbers[:index])
                    results.append(stamp)
                    continue
            kind = event.__class__
            received[kind] = received.get(kind, 0) + 1
            actors = route(event)  # type: ignore[arg-type]
            if not actors:
                if results is None:
                    results = list(numbers[:index])
                results.append(protocol.OK)  # no scope has automations for it
                continue
            if results is not None:
                results.append(line_no)
            for actor in actors:
                batch = batches.get(actor)
                if batch is None:
                    batch = batches[actor] = []
                batch.append((event, stamp, line_no))  # type: ignore[arg-type]
        for kind, n in received.items():
            self._received[kind] = self._received.get(kind, 0) + n
        out.results = numbers if results is None else results
        if batches:
            out.ticket = Ticket(asyncio.get_running_loop().create_future(), len(batches))
        return out, batches

    async def _admit(self, numbers: Sequence[int], requests: Sequence[Request],
                     now: float) -> Answers:
        """The general path: events with ids claim (id, scope) keys, after one
        lookup of the ids memory does not know."""
        results: list[bytes | int | Copy] = []
        out = Answers(results)
        horizon = now - constants.IDEMPOTENCY_WINDOW_S
        route = self._router.route
        routed: list[tuple[int, bytes | tuple[Event, float], list[Target]]] = []
        wanted: list[Key] = []
        for line_no, request in zip(numbers, requests, strict=True):
            if isinstance(request, bytes):
                routed.append((line_no, request, []))
                continue
            event: Event = request  # type: ignore[assignment]
            stamp = self._stamp(line_no, event, now)
            if isinstance(stamp, bytes):
                routed.append((line_no, stamp, []))
                continue
            actors = route(event)
            routed.append((line_no, (event, stamp), actors))
            if event.id is not None:
                wanted.extend(_keys(event, actors))
        try:  # one lookup for the ids that memory does not know
            accepted = await self.recent_ids.accepted(wanted, horizon) if wanted else set()
        except Exception as exc:  # noqa: BLE001 - the database could not be read: refuse all
            log.error("cannot look up event ids: %s", exc)
            out.results = [item if isinstance(item, bytes) else
                           protocol.error_line(line_no, f"cannot check its id: {exc}")
                           for line_no, item, _ in routed]
            return out
        ticket = Ticket(asyncio.get_running_loop().create_future())
        batches: dict[Target, Batch] = {}
        unscoped: list[tuple[str, str, float]] = []  # ids of events no scope took
        unscoped_lines: list[int] = []
        for line_no, item, actors in routed:
            if isinstance(item, bytes):
                results.append(item)
                continue
            event, event_time = item
            self._received[event.__class__] = self._received.get(event.__class__, 0) + 1
            if event.id is None:
                take = actors
                results.append(line_no if actors else protocol.OK)
            else:
                keys, claims = self._claim(event, actors, accepted, horizon)
                for key in keys:
                    self.recent_ids.claim(key, Claim(ticket, line_no, key), now)
                    ticket.keys.append(key)
                if claims:
                    results.append(Copy(line_no, claims, bool(keys)))
                    out.copies = True
                else:
                    results.append(line_no if keys else protocol.OK_DUPLICATE)
                if keys and not actors:
                    unscoped.append((event.id, unscoped_place(event.location), now))
                    unscoped_lines.append(line_no)
                take = [a for a in actors
                        if (event.id, id_place(a.scope, event.location)) in keys]
            for actor in take:
                batch = batches.get(actor)
                if batch is None:
                    batch = batches[actor] = []
                batch.append((event, event_time, line_no))
        ticket.pending = len(batches) + (1 if unscoped else 0)
        if not ticket.pending:
            return out
        out.ticket = ticket
        if ticket.keys:
            # Claims are settled when the commits are, not when the answers are
            # written: a client that stops reading holds no other client's retry.
            ticket.future.add_done_callback(partial(self._settle, ticket))
        if unscoped:
            await self._store.submit(Write([(INSERT_EVENT_ID, unscoped)], partial(
                ticket.done, lines=unscoped_lines,
                keys=[(event_id, scope) for event_id, scope, _ in unscoped])))
        await self._router.hand(batches, ticket)
        return out

    def _claim(self, event: Event, actors: list[Target], accepted: set[Key],
               horizon: float) -> tuple[list[Key], list[Claim]]:
        """The keys of this event still to evaluate, and the claims of other copies
        of it to wait for. An id an earlier version recorded for every scope ('*')
        covers all of them."""
        if (event.id, EVERY_SCOPE) in accepted:
            return [], []
        take: list[Key] = []
        claims: list[Claim] = []
        for key in _keys(event, actors):
            if key in accepted or self.recent_ids.committed_here(key, horizon):
                continue
            claim = self.recent_ids.pending(key, horizon)
            if claim is not None:
                claims.append(claim)
            else:
                take.append(key)
        return take, claims

    def _settle(self, ticket: Ticket, _: object) -> None:
        """The ticket resolved: each key it claimed is now accepted, or free again."""
        keys = ticket.keys
        if ticket.error is not None:
            self.recent_ids.release(keys)
            return
        self.recent_ids.committed(k for k in keys if k not in ticket.failed)
        if ticket.failed:
            self.recent_ids.release(ticket.failed)


def _keys(event: Event, actors: Sequence[Target]) -> list[Key]:
    """The (id, place) keys of an event with an id: one per scope it reaches, or
    the one that says it reached none."""
    assert event.id is not None
    location = event.location
    return [(event.id, id_place(actor.scope, location)) for actor in actors] \
        or [(event.id, unscoped_place(location))]


async def answer_copy(copy: Copy, ticket: Ticket | None) -> bytes:
    """A Copy's answer once every claim it waits for (and its own chunk) resolved."""
    problems = []
    for claim in copy.claims:
        await asyncio.shield(claim.ticket.future)
        if (error := claim.error()) is not None:
            problems.append(error)
    if copy.routed and ticket is not None:
        await ticket.future
        if (error := ticket.line_error(copy.line_no)) is not None:
            problems.append(error)
    if problems:
        return protocol.error_line(copy.line_no, f"not accepted: {problems[0]}; send it again")
    return protocol.OK if copy.routed else protocol.OK_DUPLICATE
