"""Attempt records onto the history stream, many in one message: the attempts that
finished while the last message was being published go out together in the next
(one publish and one acknowledgement for all of them, and one message for each
node's mirror to take), and each attempt waits until JetStream took its own. See
docs/cluster.md (what a delivery costs on the wire)."""

from __future__ import annotations

import logging
import os
from typing import Any

import anyio

from runhook.cluster.bus import HISTORY_SUBJECT, MSG_ID, Bus, encode

log = logging.getLogger("runhook.cluster.delivery")
# A message's records at most, and its bytes at most (JetStream's default payload
# limit is 1 MiB): an execution's context is bounded, but a batch of them is not.
MOST = 256
MOST_BYTES = 512 * 1024
PUBLISH_TIMEOUT_S = 5.0  # one try of a publish
PUBLISH_RETRY_S = 0.5


class _Waiting:
    __slots__ = ("data", "done", "ok")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.done = anyio.Event()
        self.ok = False


class Recorder:
    """Publishes attempt records in batches, one batch at a time, each tried again
    until JetStream takes it for up to `wait` seconds from its first try. A batch
    carries a message id of its own (this node's run and a count), so a batch
    published twice (its acknowledgement lost) is kept once; applying one twice
    would change nothing anyway (records.py)."""

    def __init__(self, bus: Bus, wait: float) -> None:
        self._bus = bus
        self._wait = wait
        self._queue: list[_Waiting] = []
        self._wake = anyio.Event()
        self._run_id = f"{bus.settings.node} {os.getpid()} {os.urandom(4).hex()}"
        self._count = 0
        self.batches = 0  # messages published (for the benchmark's figures)

    async def record(self, record: list[Any]) -> bool:
        """True once JetStream took the message holding `record`; False if it did not
        within the wait (the attempt is then unrecorded)."""
        waiting = _Waiting(encode(record))
        self._queue.append(waiting)
        self._wake.set()
        await waiting.done.wait()
        return waiting.ok

    async def run(self) -> None:
        while True:
            while not self._queue:
                self._wake = anyio.Event()
                await self._wake.wait()
            batch: list[_Waiting] = []
            size = 0
            while self._queue and len(batch) < MOST and (not batch or size < MOST_BYTES):
                waiting = self._queue.pop(0)
                batch.append(waiting)
                size += len(waiting.data)
            ok = False
            try:
                ok = await self._publish(batch)
            finally:
                for waiting in batch:
                    waiting.ok = ok
                    waiting.done.set()

    async def _publish(self, batch: list[_Waiting]) -> bool:
        # The records are msgpack already: the batch is a msgpack array of them,
        # ["attempts", [record, ...]], put together without decoding them again.
        data = b"".join([_ATTEMPTS, _array(len(batch)), *(w.data for w in batch)])
        self._count += 1
        headers = {MSG_ID: f"attempts {self._run_id} {self._count}"}
        with anyio.move_on_after(self._wait):
            while True:
                try:
                    with anyio.fail_after(PUBLISH_TIMEOUT_S):
                        await (await self._bus.js.publish_async(HISTORY_SUBJECT, data,
                                                                headers=headers))
                    self.batches += 1
                    return True
                except Exception as exc:  # noqa: BLE001 - NATS away for now: again
                    log.debug("cluster: publishing %d attempt records: %s", len(batch),
                              str(exc) or type(exc).__name__)
                await anyio.sleep(PUBLISH_RETRY_S)
        return False


def _array(length: int) -> bytes:
    """A msgpack array header."""
    if length < 16:
        return bytes([0x90 | length])
    if length < 1 << 16:
        return b"\xdc" + length.to_bytes(2, "big")
    return b"\xdd" + length.to_bytes(4, "big")


_ATTEMPTS = _array(2) + encode("attempts")
