"""What a node can tell of its own cluster parts, for `runhook status` and /readyz:
whether JetStream answers, how far its history mirror is behind the stream, and
which of its partitions are starting again after a failure."""

from __future__ import annotations

import logging
import time
from typing import Any

import anyio
import nats.js.errors

from runhook.cluster.bus import HISTORY, Bus
from runhook.cluster.mirror import Mirror
from runhook.config.nats_access import unauthenticated

log = logging.getLogger("runhook.cluster")
PROBE_S = 1.0  # how often JetStream is asked about the mirror's consumer
PROBE_TIMEOUT_S = 2.0
# JetStream counts as unreachable when no probe was answered for this long.
STALE_S = 3.0
# The mirror counts as wedged when records wait and none was applied for this long
# (a fetch answers within a second; a commit within the writer's batch).
WEDGED_S = 10.0


class Health:
    def __init__(self, bus: Bus, mirror: Mirror) -> None:
        self._bus = bus
        self._mirror = mirror
        self.answered_at: float | None = None  # monotonic: JetStream's last answer
        self.last_error: str | None = None  # the last probe's failure (kept after recovery)
        self.stream_seq: int | None = None  # the history stream's last sequence
        self.applied_seq: int | None = None  # the mirror's ack floor in it
        self.lag: int | None = None  # records the mirror has not acknowledged yet

    async def run(self) -> None:
        while True:
            try:
                with anyio.fail_after(PROBE_TIMEOUT_S):
                    await self._probe()
                self.answered_at = time.monotonic()
            except nats.js.errors.NotFoundError:  # the mirror has not subscribed yet
                self.answered_at = time.monotonic()
            except Exception as exc:  # noqa: BLE001 - that is what is told
                self.last_error = str(exc) or type(exc).__name__
            await anyio.sleep(PROBE_S)

    async def _probe(self) -> None:
        info = await self._bus.js.consumer_info(HISTORY, self._mirror.durable)
        pending = int(info.num_pending or 0)
        self.lag = pending + int(info.num_ack_pending or 0)
        self.stream_seq = int(info.delivered.stream_seq or 0) + pending \
            if info.delivered else None
        self.applied_seq = int(info.ack_floor.stream_seq or 0) if info.ack_floor else None

    @property
    def connected(self) -> bool:
        nc = self._bus.nc
        return nc is not None and nc.is_connected

    @property
    def reachable(self) -> bool:
        """Connected, and JetStream answered lately (a connection to a cluster without
        a quorum is up while every request fails)."""
        return self.connected and self.answered_at is not None \
            and time.monotonic() - self.answered_at < STALE_S

    @property
    def wedged(self) -> bool:
        mirror = self._mirror
        behind = bool(mirror.failing) or bool(self.lag)
        return behind and time.monotonic() - mirror.progress_at > WEDGED_S

    def report(self) -> dict[str, Any]:
        mirror = self._mirror
        return {
            "nats": {"connected": self.connected, "jetstream": self.reachable,
                     "last_error": self.last_error,
                     "unauthenticated": unauthenticated(self._bus.settings.servers,
                                                        self._bus.settings.access)},
            "mirror": {"stream_seq": self.stream_seq, "applied_seq": self.applied_seq,
                       "lag": self.lag, "wedged": self.wedged, "failing": mirror.failing,
                       "rejected": dict(mirror.rejected)},
        }
