"""Whether a copy of an execution that JetStream sent again was settled already: its
attempt recorded with a final state, the acknowledgement lost (or its node killed
between the two). The record is the proof: the history stream up to now applied to
this node's history says it. See docs/cluster.md (what a delivery costs on the wire)."""

from __future__ import annotations

import logging

import nats.js.errors

from runhook.cluster.bus import HISTORY, HISTORY_SUBJECT, Bus
from runhook.cluster.mirror import Mirror
from runhook.core.executions import Job

log = logging.getLogger("runhook.cluster.delivery")
# States after which no attempt is due (PENDING waits for one; a copy of a PENDING
# execution is the retry itself, or a redelivery, and is sent).
FINAL = frozenset({"FINISHED", "FAILED", "SKIPPED", "GROUPED"})
MIRROR_WAIT_S = 10.0


async def settled(bus: Bus, mirror: Mirror, job: Job) -> bool | None:
    """True if the attempt this copy would make was made and recorded (the execution
    is in a final state with more attempts than the copy carries); False if not;
    None if not known yet (this node's history is behind the stream: ask again)."""
    try:
        last = (await bus.js.get_last_msg(HISTORY, HISTORY_SUBJECT)).seq or 0
    except nats.js.errors.NotFoundError:
        return False  # no history at all
    if not await mirror.reached(last, MIRROR_WAIT_S):
        return None
    found = await mirror.store.execution(job.id)
    return found is not None and found.state in FINAL and found.attempts > job.attempts
