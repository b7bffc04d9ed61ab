"""One delivery attempt and what it leaves, for every deployment: paced, sent, judged,
counted, an integration disabled by a 410, logged; the caller records it and
schedules what follows (the SQLite scan on one machine, JetStream's redelivery in a
cluster)."""

from __future__ import annotations

import logging
import time

import aiohttp

from runhook.config.runtime import Runtime
from runhook.core.durations import parse_rate
from runhook.core.executions import Job
from runhook.delivery import attempt, policy, transport
from runhook.delivery.ratelimit import TokenBucket

log = logging.getLogger("runhook.delivery")
_LEVELS = {"FINISHED": logging.DEBUG, "PENDING": logging.INFO, "FAILED": logging.WARNING}


class Attempted:
    """One attempt as it is recorded: the attempt's row, and the execution's new state."""

    __slots__ = ("disabled", "finished", "job", "number", "outcome", "reason", "response",
                 "started")

    def __init__(self, job: Job, number: int, started: float, finished: float,
                 response: transport.Response | None, outcome: policy.Outcome,
                 reason: str | None) -> None:
        self.job = job
        self.number = number
        self.started = started
        self.finished = finished
        self.response = response
        self.outcome = outcome
        self.reason = reason  # redacted
        self.disabled: str | None = None  # the integration's reason, when this disabled it

    @property
    def state(self) -> str:
        return self.outcome.state

    @property
    def due(self) -> float | None:
        """When the next attempt is due, for a retry."""
        delay = self.outcome.delay
        return self.finished + delay if delay is not None else None

    def attempt_row(self) -> tuple[str, int, float, float, int | None, str | None, str | None]:
        """(execution_id, number, started_at, duration_ms, status, error, response)."""
        response = self.response
        return (self.job.id, self.number, self.started, (self.finished - self.started) * 1000.0,
                response.status if response else None, self.reason,
                response.body or None if response else None)  # redacted by transport


class Counts:
    """One integration's deliveries here, for `runhook status`, and its pace."""

    def __init__(self) -> None:
        self.in_flight = 0
        self.sent = 0
        self.last_error: str | None = None
        # Set by a 410 answer: nothing is sent (executions wait, PENDING) until enabled.
        self.disabled: str | None = None
        self._rate: str | None = None
        self._share = 1.0
        self._bucket: TokenBucket | None = None

    def pace(self, rate: str | None, share: float = 1.0) -> float:
        """Seconds to wait before the next attempt under `share` of `rate` (a token
        spent): one machine takes all of it, a cluster node its share of the
        cluster's (docs/cluster.md). A changed rate starts a new bucket; a changed
        share retunes this one, keeping the tokens it has."""
        if not rate:
            return 0.0
        now = time.monotonic()
        bucket = self._bucket
        if rate != self._rate or bucket is None:
            self._rate, self._share = rate, share
            bucket = self._bucket = TokenBucket(parse_rate(rate) * share, now=now)
        elif share != self._share:
            self._share = share
            bucket.retune(parse_rate(rate) * share, now)
        return bucket.take(now)

    async def attempt(self, session: aiohttp.ClientSession, runtime: Runtime,
                      job: Job) -> Attempted:
        """Attempt `job.attempts + 1` of an execution (judged as the attempt of its
        redelivery round): sent, judged and told here; recording it is the caller's."""
        number = job.attempts + 1
        started = time.time()
        try:
            response, outcome = await attempt.send(
                session, runtime.settings, job.integration, job.automation, job.context,
                job.id, number - job.round_start)
        except Exception as exc:  # a bug must fail one execution, not the deliveries
            log.exception("execution %s: attempt %d crashed", job.id, number)
            response = None
            outcome = policy.Outcome("FAILED", reason=f"internal error: {exc!r}")
        return self.judged(runtime, job, number, started, response, outcome)

    def judged(self, runtime: Runtime, job: Job, number: int, started: float,
               response: transport.Response | None, outcome: policy.Outcome) -> Attempted:
        finished = time.time()
        reason = runtime.settings.redactor(outcome.reason) if outcome.reason else None
        done = Attempted(job, number, started, finished, response, outcome, reason)
        if outcome.state == "FINISHED":
            self.sent += 1
            self.last_error = None  # the endpoint answers again: its old error is history
        elif not outcome.config_error:  # a removed automation says nothing of the endpoint
            self.last_error = reason
        if outcome.disable:
            name = job.integration
            self.disabled = done.disabled = \
                f"{reason} (execution {job.id}); `runhook enable {name}` resumes"
            log.warning("integration %s disabled: %s", name, self.disabled)
        runtime.metrics.delivered(job.integration, job.automation, outcome.state,
                                  finished - started, response is not None)
        # A success is DEBUG (it is in the history and the INFO summary); a retry is
        # INFO and a failure WARNING, so what needs a look stands out in the journal.
        log.log(_LEVELS[outcome.state], "execution %s %s: attempt %d %s in %.0f ms, "
                "%.1fs after creation%s", job.id, job.automation, number, outcome.state,
                (finished - started) * 1000.0, finished - job.created_at,
                f" ({reason})" if reason else "")
        return done
