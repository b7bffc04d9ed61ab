"""A run's outbox: bounded queues the training thread appends to, and the one
background thread that sends them to the daemon in batches, resending what was not
acknowledged (events carry ids, so the daemon drops a second copy)."""

from __future__ import annotations

import itertools
import json
import logging
import threading
import time
import uuid
from collections import deque
from typing import Any

from runhook.client import Client

log = logging.getLogger("runhook")

# Metric events kept while the daemon is away. At ~100 bytes each this is a few MB;
# at one log() a step and a step a second it is 28 hours of training, the length of
# a daemon upgrade or a long outage. Past it the oldest metrics are dropped (counted).
QUEUE_SIZE = 100_000
# Events per send: the socket client's pipelining window, one round of answers.
BATCH = 512
# How often the sender looks for new events. The training thread never wakes it
# (waking takes a lock, and a SIGTERM handler that interrupted a log() holding it
# would deadlock): it polls, and 20 sends a second at most is nothing to either side.
POLL = 0.05
# Reconnection backoff while the daemon is down: quick for a restart, then a try
# every few seconds, so a run catches up soon after the daemon is back.
RETRY_FIRST = 0.1
RETRY_MAX = 2.0
# One send's wait for the daemon's answers; a hung daemon costs the sender thread
# this long, never the training thread.
SEND_TIMEOUT = 30.0
HEARTBEAT = 30.0  # the daemon's default timeout is ten of these (docs/integrations.md)
# A heartbeat alone gets a quarter of the interval per attempt (at least this), not
# SEND_TIMEOUT: a connection that hangs (a listener's slots full, a TLS handshake
# that never ends) is given up and retried with backoff several times before the
# daemon's timeout (at least twice the interval) calls the run crashed. The backoff
# is capped at the same quarter.
ATTEMPT_MIN = 1.0


def encode(event: dict[str, Any]) -> bytes:
    """json, not msgspec: it writes NaN and Infinity as the literals the daemon reads
    (msgspec writes null, which would hide a diverged loss from NONFINITE automations)."""
    return json.dumps(event, separators=(",", ":")).encode() + b"\n"


class Outbox:
    """`put_metrics` may drop the oldest metrics when the queue is full; `put` (state
    and identity events) never drops. Both are a deque append: no lock, no syscall,
    safe from a signal handler. `close(final)` sends `final` after everything queued."""

    def __init__(self, address: str, token: str | None, base: dict[str, Any],
                 queue_size: int = QUEUE_SIZE, heartbeat: float = HEARTBEAT,
                 retry_max: float = RETRY_MAX) -> None:
        self._address, self._token = address, token
        self._base = base  # location and run_id: what every event of the run carries
        self._heartbeat = heartbeat
        self._beat_timeout = min(SEND_TIMEOUT, max(ATTEMPT_MIN, heartbeat / 4))
        self._retry_max = min(retry_max, max(RETRY_FIRST, heartbeat / 4))
        self._metrics: deque[dict[str, Any]] = deque(maxlen=queue_size)
        self._control: deque[dict[str, Any]] = deque()
        # Ids are `run_id-process-n`: a run resumed by another process (the same
        # run_id after a preemption) must not have its events taken for resends of
        # the first process's, which the daemon would acknowledge and not evaluate.
        self._prefix = f"{base['run_id']}-{uuid.uuid4().hex[:8]}"
        self._ids = itertools.count(1)  # next() is atomic: any thread may log
        self.made = 0  # metric events put (exact when one thread logs, as training does)
        self._taken = 0  # metric events the sender took off the queue
        self.sent = 0  # events the daemon acknowledged
        self.rejected = 0  # events it answered with an error (a bad value): not resent
        self.dropped = 0  # metric events dropped at the bound (final once closed)
        self._full_said = False
        self._final: dict[str, Any] | None = None
        self._inflight: deque[dict[str, Any]] = deque()  # the sender thread's own
        self._final_taken = False  # the sender has it (in flight, or delivered)
        self.delivered = False  # the final event was acknowledged
        # Attempts to send, and the last whose connection was refused (nothing listens
        # at the address: known at once, unlike a daemon that took the connection and
        # has not answered yet), with its error.
        self._attempts = 0
        self._refused_at = 0
        self.refusal: str | None = None
        self._reached = False  # a daemon took an event from this run at least once
        self._stop = threading.Event()
        self._client: Client | None = None
        self._client_timeout = SEND_TIMEOUT
        self._thread = threading.Thread(target=self._run, name="runhook-sender", daemon=True)
        self._thread.start()

    # --- the training side ---

    def _stamp(self, event: dict[str, Any]) -> dict[str, Any]:
        event.update(self._base)
        event["id"] = f"{self._prefix}-{next(self._ids)}"
        return event

    def put(self, event: dict[str, Any]) -> None:
        self._control.append(self._stamp(event))

    def put_located(self, event: dict[str, Any]) -> None:
        """An event that names its own place and carries no run (an artifact the run
        logged or linked): only its id is stamped; it never drops, as `put`."""
        event["id"] = f"{self._prefix}-{next(self._ids)}"
        self._control.append(event)

    def put_metrics(self, event: dict[str, Any]) -> None:
        metrics = self._metrics
        if len(metrics) == metrics.maxlen and not self._full_said:
            self._full_said = True
            log.warning("runhook: %d metric events queued for an unreachable daemon; "
                        "dropping the oldest from now on (counted as runhook_dropped)",
                        metrics.maxlen)
        self.made += 1
        metrics.append(self._stamp(event))  # a full deque drops its oldest on append

    def close(self, final: dict[str, Any], timeout: float) -> bool:
        """Queue `final` to go after everything else, wait up to `timeout` seconds for
        it to be acknowledged, then stop the sender. True if it was."""
        self._final = self._stamp(final)
        deadline = time.monotonic() + timeout
        after = self._attempts
        # Polling, not an Event: this may run in a signal handler (see POLL). An
        # attempt made since the end was queued and refused at connect ends the wait
        # when no daemon ever took this run's events (none at the address: waiting is
        # for a daemon that has them). One that did may be restarting: its end event
        # is waited for, or the daemon would take the silent run for a crash.
        while not self.delivered and self._thread.is_alive() and time.monotonic() < deadline \
                and (self._reached or self._refused_at <= after):
            time.sleep(0.01)
        self._stop.set()
        return self.delivered

    @property
    def queue_size(self) -> int:
        return self._metrics.maxlen or 0

    def lost(self) -> int:
        """Metric events dropped at the bound: exact once the sender took the end (it
        counts them then); before that, while it may be taking, off by one at most."""
        if self._final_taken:
            return self.dropped
        return self.made - self._taken - len(self._metrics)

    def pending(self) -> int:
        """Events not acknowledged (queued or in flight), for the final warning."""
        # The end counts once: in flight once the sender took it, else on its own.
        return len(self._metrics) + len(self._control) + len(self._inflight) \
            + (self._final is not None and not self._final_taken)

    # --- the sender thread ---

    def _take(self) -> deque[dict[str, Any]]:
        batch: deque[dict[str, Any]] = deque()
        while self._control and len(batch) < BATCH:
            batch.append(self._control.popleft())
        while self._metrics and len(batch) < BATCH:
            batch.append(self._metrics.popleft())
            self._taken += 1
        final = self._final
        if final is not None and not self._final_taken and not self._metrics \
                and not self._control and len(batch) < BATCH - 1:
            self._final_taken = True
            # Producers are done: drops happen only on append, so this count is final.
            self.dropped = self.made - self._taken
            if self.dropped:
                batch.append(self._stamp({"type": "run.metrics",
                                          "values": {"runhook_dropped": self.dropped}}))
            batch.append(final)
        return batch

    def _run(self) -> None:
        backoff = RETRY_FIRST
        last = time.monotonic()
        down_since: float | None = None
        while not self._stop.is_set():
            if not self._inflight:
                self._inflight = self._take()
            if not self._inflight:
                if time.monotonic() - last < self._heartbeat:
                    self._stop.wait(POLL)
                    continue
                self._inflight.append({"type": "run.heartbeat", **self._base})
            self._attempts += 1
            try:
                self._deliver()
            except Exception as error:  # noqa: BLE001 - whatever it is, training goes on
                refused = isinstance(error, ConnectionRefusedError | FileNotFoundError)
                self.refusal = str(error) if refused else None
                if refused:
                    self._refused_at = self._attempts
                # Connection errors, an HTTP refusal of the whole request (RunhookError:
                # 401, 413), a garbled answer: all are retried the same way, and the
                # thread must not die, or the run would go silent and look crashed.
                if self._client is not None:
                    self._client.close()
                    self._client = None
                if down_since is None:
                    down_since = time.monotonic()
                    log.warning("runhook: daemon at %s unreachable (%s); training goes on, "
                                "events are kept (up to %d metric events) and resent",
                                self._address, error, self._metrics.maxlen)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self._retry_max)
                continue
            if down_since is not None:
                log.warning("runhook: daemon reachable again after %.0f s",
                            time.monotonic() - down_since)
                down_since = None
            backoff = RETRY_FIRST
            self.refusal = None
            self._reached = True
            last = time.monotonic()
        if self._client is not None:
            self._client.close()

    def _deliver(self) -> None:
        """Send the batch in flight; each answered event leaves it, so after a broken
        connection only the unanswered rest is sent again."""
        inflight = self._inflight
        timeout = self._beat_timeout if len(inflight) == 1 \
            and inflight[0]["type"] == "run.heartbeat" else SEND_TIMEOUT
        if self._client is not None and timeout != self._client_timeout:
            # Only after a whole interval of idleness or a failed heartbeat: the
            # kept-alive connection has little left to save.
            self._client.close()
            self._client = None
        if self._client is None:
            self._client = Client(self._address, timeout=timeout, token=self._token)
            self._client_timeout = timeout
        lines = [encode(event) for event in inflight]
        for answer in self._client.send_many(lines):
            event = inflight.popleft()
            if answer.get("ok"):
                self.sent += 1
            else:
                self.rejected += 1
                if self.rejected <= 3:
                    log.warning("runhook: the daemon refused an event: %s",
                                answer.get("error"))
            if event is self._final:
                self.delivered = True
