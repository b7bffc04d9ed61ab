"""What goes into a scope actor's inbox: batches of events (with their stream position
in cluster mode), checkpoints, and the actor's own wake-ups and deferred writes."""

from __future__ import annotations

from typing import NamedTuple

from runhook.core.acks import Ticket
from runhook.core.events import Event
from runhook.store.database import Write


class Checkpoint:
    """An inbox item asking the actor to write its metric windows (and evict
    stale runs). Going through the inbox keeps it in order with the events."""

    def __init__(self, evict: bool = False, ttl: float = 0.0) -> None:
        self.evict = evict
        self.ttl = ttl


class Wake:
    """An inbox item: the timers changed under a waiting actor (see `take`)."""


class Submit:
    """An inbox item: a write evaluated in `take` that met a full writer queue; the
    actor submits it (waiting) before anything after it."""

    def __init__(self, write: Write) -> None:
        self.write = write


# (event, event time, line number): a chunk's events for one scope, in line order.
Batch = list[tuple[Event, float, int]]


class Streamed(NamedTuple):
    """A partition's events for one scope, read from its stream (cluster mode): each
    item's number is its stream sequence, and `received[i]` the time the publisher
    took item i. Those two name what it causes and count its deadlines, alike on
    every node that evaluates it (the owner's own clock and randomness would not)."""

    batch: Batch
    received: list[float]


def rest(batch: Batch | Streamed, start: int) -> Batch | Streamed:
    """The items from `start` on, with their stream position if they have one."""
    if isinstance(batch, Streamed):
        return Streamed(batch.batch[start:], batch.received[start:])
    return batch[start:]


# A batch with the ticket of its chunk; or a checkpoint, a deferred write, a wake-up.
Item = (tuple[Batch | Streamed, Ticket] | tuple[Checkpoint, None] | tuple[Submit, None]
        | tuple[Wake, None])
