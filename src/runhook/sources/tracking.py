"""Following an MLflow tracking server (docs/mlflow.md): each look reads what moved, saves
the cursor with the look's events, then sends them through admission; errors back off.

Atomicity (docs/architecture.md): a look's events and the cursor past them are written in one
transaction *before* they are sent. A restart resends those events as they were (same
ids: answered duplicate where they had committed, evaluated where not) and reads on
from the cursor. Nothing read is lost, and nothing is evaluated twice, because ids
derive from (source, run, step, metric, timestamp) and the resent events are exactly
the ones first sent."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from fnmatch import fnmatchcase

import anyio
import msgspec
from anyio.abc import TaskGroup

from runhook.config.settings import Settings
from runhook.config.tracking import Tracking
from runhook.core.status import SourceStatus
from runhook.ingest.ingress import Ingress
from runhook.ingest.pipeline import commit
from runhook.sources import tracking_marks as marks
from runhook.sources.tracking_api import Api, ApiError, MlflowRun
from runhook.sources.tracking_marks import Cursor, TrackedEvent
from runhook.store.cursors import load_cursor, save_cursor
from runhook.store.database import Store, WriteFailed

log = logging.getLogger("runhook.sources.tracking")

# Runs ended this long before the last look are still searched for: MLflow's end_time
# is the training machine's clock, which may run behind ours.
CLOCK_MARGIN_MS = 5 * 60 * 1000
# History points one look reads at most; a larger backlog (a first look at long runs)
# is read over several looks, from where the cursor left it.
MAX_POINTS_PER_LOOK = 200_000
# Events handed to admission at once: bounded memory per commit round.
SEND_CHUNK = 5_000
# Backoff after failed looks: the interval doubled per failure, up to this.
MAX_BACKOFF_S = 300.0
# A look's events refused this many times in a row are dropped (logged and shown):
# a refusal that does not pass (a scope's run bound) must not wedge the source.
MAX_SEND_TRIES = 5
# A run not found by any look for this long leaves the cursor.
FORGET_S = 86400.0
# History calls pipelined in one round of a look.
HISTORIES_PER_ROUND = 5_000
# Experiments per runs/search call.
EXPERIMENTS_PER_SEARCH = 100

_pending_decoder = msgspec.msgpack.Decoder(list[TrackedEvent])
_cursor_decoder = msgspec.msgpack.Decoder(Cursor)


class Refused(Exception):
    """Some of a look's events were not committed; the message is the first answer."""


class Follower:
    """One tracking source's looks, on its interval; its status for `runhook status`."""

    def __init__(self, source: Tracking, ingress: Ingress, store: Store,
                 api: Api | None = None) -> None:
        self.source = source
        self._ingress = ingress
        self._store = store
        self.api = api or Api(source)
        self.cursor = Cursor()
        self.pending: list[TrackedEvent] = []
        self._tries = 0
        self.looks = 0
        self.events = 0
        self.failures = 0
        self.last_error: str | None = None
        self.last_look_at: float | None = None  # start of the last complete look

    def status(self) -> SourceStatus:
        lag = None if self.last_look_at is None else round(time.time() - self.last_look_at, 1)
        return SourceStatus(name=self.source.name, kind="mlflow-tracking", url=self.source.url,
                            lag_s=lag, last_error=self.last_error, failures=self.failures,
                            looks=self.looks, events=self.events, requests=self.api.requests,
                            runs=len(self.cursor.runs))

    async def run(self) -> None:
        try:
            saved = await load_cursor(self._store, self.source.name)
            if saved is not None:
                self.cursor = _cursor_decoder.decode(saved[0])
                self.pending = _pending_decoder.decode(saved[1])
            while True:
                try:
                    await self.look()
                except (ApiError, Refused, WriteFailed) as exc:
                    self._failed(str(exc))
                except Exception as exc:
                    log.exception("source %s: look failed", self.source.name)
                    self._failed(f"{type(exc).__name__}: {exc}")
                else:
                    if self.failures:
                        log.info("source %s: following again after %d failed looks",
                                 self.source.name, self.failures)
                    self.failures, self.last_error = 0, None
                await anyio.sleep(self._delay())
        finally:
            with anyio.CancelScope(shield=True):
                await self.api.close()

    def _delay(self) -> float:
        interval = self.source.interval
        if not self.failures:
            return interval
        backoff: float = interval * 2 ** min(self.failures, 20)
        return min(backoff, max(MAX_BACKOFF_S, interval))

    def _failed(self, error: str) -> None:
        self.failures += 1
        self.last_error = error
        if self.failures == 1 or self.failures % 10 == 0:  # not a line per look while down
            log.warning("source %s: look failed (%d in a row, next in %.1fs): %s",
                        self.source.name, self.failures, self._delay(), error)

    async def look(self) -> None:
        """One look: resend what the last one did not get committed, then read what
        moved, save it with the cursor past it, and send it."""
        if self.pending:
            await self._send(self.pending)
        started = time.time()
        experiments = await self._experiments()
        cursor = self.cursor
        runs: dict[str, MlflowRun] = {}
        ids = sorted(experiments)
        for i in range(0, len(ids), EXPERIMENTS_PER_SEARCH):
            chunk = ids[i:i + EXPERIMENTS_PER_SEARCH]
            async for run in self.api.runs(chunk, "attributes.status = 'RUNNING'"):
                runs[run.info.run_id] = run
            if cursor.since is not None:
                # Ended since the last look (a later answer replaces a RUNNING one).
                since = cursor.since - CLOCK_MARGIN_MS
                async for run in self.api.runs(chunk, f"attributes.end_time >= {since}"):
                    runs[run.info.run_id] = run
        plans: list[tuple[MlflowRun, str, list[marks.Reading]]] = []
        for run in sorted(runs.values(), key=lambda r: (r.info.start_time, r.info.run_id)):
            project = experiments.get(run.info.experiment_id)
            if run.info.status not in marks.STATES or project is None:
                continue  # SCHEDULED: not started
            plans.append((run, project, marks.readings(run, cursor.runs.get(run.info.run_id))))
        await self._read([r for _, _, readings in plans for r in readings if not r.done])
        events: list[TrackedEvent] = []
        new_runs = dict(cursor.runs)
        complete = True
        for run, project, readings in plans:
            found, mark, done = marks.run_events(
                self.source.name, self.source.entity, project, self.source.group_tag, run,
                cursor.runs.get(run.info.run_id), readings, started)
            events.extend(found)
            new_runs[run.info.run_id] = mark
            complete = complete and done
        since = int(started * 1000) if complete or cursor.since is None else cursor.since
        forget = started - FORGET_S
        new = Cursor(since, {run_id: m for run_id, m in new_runs.items()
                             if m.seen >= forget and not (
                                 m.status in marks.TERMINAL and m.end_time is not None
                                 and m.end_time < since - CLOCK_MARGIN_MS)})
        # The cursor and the events it moved past, durable before they are sent.
        await self._store.commit(save_cursor(
            self.source.name, msgspec.msgpack.encode(new), msgspec.msgpack.encode(events),
            time.time()))
        self.cursor, self.pending, self._tries = new, events, 0
        if events:
            await self._send(events)
        self.looks += 1
        self.last_look_at = started

    async def _experiments(self) -> dict[str, str]:
        """The followed experiments, id → name: the listed names (and globs) among the
        active ones, or every active one."""
        wanted = self.source.experiments
        if wanted and not any(_is_glob(w) for w in wanted):
            found = [await self.api.experiment(name) for name in wanted]
            return {e.experiment_id: e.name for e in found if e is not None}
        return {e.experiment_id: e.name for e in await self.api.experiments()
                if e.lifecycle_stage == "active"
                and (not wanted or any(fnmatchcase(e.name, w) for w in wanted))}

    async def _read(self, readings: list[marks.Reading]) -> None:
        """Page every history that moved, in rounds of pipelined calls, until all are
        read or the look's budget of points is spent (the rest next look)."""
        budget = MAX_POINTS_PER_LOOK
        active = readings
        while active and budget > 0:
            batch = active[:HISTORIES_PER_ROUND]
            pages = await self.api.histories([(r.run_id, r.key, r.offset) for r in batch])
            for reading, (page, more) in zip(batch, pages, strict=True):
                budget -= reading.take(page, more)
            active = [r for r in active if not r.done]

    async def _send(self, events: list[TrackedEvent]) -> None:
        """Admit the events and wait for their commits; Refused (they stay pending) if
        any line was not committed, until MAX_SEND_TRIES."""
        admission = self._ingress.admission
        refused: list[str] = []
        for i in range(0, len(events), SEND_CHUNK):
            chunk = events[i:i + SEND_CHUNK]
            outcomes = await commit(admission, chunk, time.time())
            refused.extend(o.error for o in outcomes if o.error is not None)
        if refused:
            self._tries += 1
            if self._tries < MAX_SEND_TRIES:
                raise Refused(f"{len(refused)} events not committed, will resend: {refused[0]}")
            log.error("source %s: dropping %d events refused %d times: %s", self.source.name,
                      len(refused), self._tries, refused[0])
        self.events += len(events) - len(refused)
        self.pending, self._tries = [], 0


def _is_glob(pattern: str) -> bool:
    return any(c in pattern for c in "*?[")


class Followers:
    """The followers of the configured tracking sources, started and stopped as
    reloads add, change or remove them."""

    def __init__(self, settings: Callable[[], Settings], ingress: Ingress, store: Store) -> None:
        self._settings = settings
        self._ingress = ingress
        self._store = store
        self._running: dict[str, tuple[Follower, anyio.CancelScope]] = {}
        self._tg: TaskGroup | None = None

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] =
                  anyio.TASK_STATUS_IGNORED) -> None:
        async with anyio.create_task_group() as tg:
            self._tg = tg
            self.reconfigure()
            task_status.started()
            await anyio.sleep_forever()

    def reconfigure(self) -> None:
        if self._tg is None:
            return
        wanted = self._settings().tracking
        for name, (follower, scope) in list(self._running.items()):
            if wanted.get(name) != follower.source:
                scope.cancel()
                del self._running[name]
        for name, source in wanted.items():
            if name not in self._running:
                follower = Follower(source, self._ingress, self._store)
                scope = anyio.CancelScope()
                self._running[name] = (follower, scope)
                self._tg.start_soon(self._follow, follower, scope, name=f"follow {name}")

    @staticmethod
    async def _follow(follower: Follower, scope: anyio.CancelScope) -> None:
        with scope:
            await follower.run()

    def statuses(self) -> list[SourceStatus]:
        return [follower.status() for follower, _ in self._running.values()]
