"""What an event causes in one scope: execution rows, the run state to commit with
them, and the jobs to deliver after; plain synchronous code, no I/O, no clock. How a
firing becomes its execution (silenced, grouped, resolved) is record.py's Recorder.

Two times come in: `now`, the wall time, for what is recorded (executions, ids, the
rows of runs, flags and digest windows), and `mono`, a monotonic reading on which the
book counts every deadline (core/clock.py). The book holds monotonic readings only;
at the store's edge they become wall times by the offset of the moment, and back.
Without `mono` the two are one clock (pure tests; cluster mode's stream time)."""

from __future__ import annotations

from typing import Any

from runhook.config.settings import Automation, ScopeSettings
from runhook.core.acks import id_place
from runhook.core.durations import describe
from runhook.core.events import (
    CollectionEvent,
    Deadline,
    Event,
    RunEvent,
    RunHeartbeat,
    RunMetrics,
    RunState,
)
from runhook.core.executions import artifact_context, execution_row, group_context, iso
from runhook.evaluate import metric_log
from runhook.evaluate.caused import (
    NOTHING,
    ONLY_LOGGED,
    STORED_TIMES,
    Caused,
    Checkpointed,
    make_caused,
    run_row,
    shifted,
)
from runhook.evaluate.cooldowns import Cooldowns
from runhook.evaluate.digests import Digests, digest_context
from runhook.evaluate.ids import PROCESS_IDS, IdSource
from runhook.evaluate.metadata import Remembered
from runhook.evaluate.record import Recorder
from runhook.evaluate.run import LOGGED, UNWATCHED, Firing, Outcome
from runhook.evaluate.runbook import RunBook
from runhook.evaluate.timers import DIGEST, Key
from runhook.store.database import Statement
from runhook.store.statements import (
    CLEAR_DIGEST,
    CLEAR_LOG,
    CLEAR_OLD_LOG,
    FORGET_RUN,
    INSERT_EVENT_ID,
    LOG_METRICS,
    UPSERT_GROUP,
    UPSERT_RUN,
    UPSERT_WINDOW,
)
from runhook.triggers.artifact import occurrences
from runhook.triggers.silences import Silences
from runhook.triggers.state import CRASHED


class Evaluator(Recorder):
    """One scope's automations and its runs' state. `evaluate` advances the book and
    returns what the event caused; if it raises, the book may hold part of the
    event, and the owner must `restore` it from what is committed before going on."""

    def __init__(self, scope: str, automations: list[Automation],
                 silences: Silences | None = None, settings: ScopeSettings | None = None,
                 now: float = 0.0, remembered: Remembered | None = None,
                 ids: IdSource | None = None) -> None:
        """`now`: the monotonic reading at which silence starts to count; `ids`: how
        executions are named (unique in this process, unless given)."""
        self.scope = scope
        self.silences = silences if silences is not None else Silences()
        self.automations = automations
        self.settings = settings or ScopeSettings()
        self.book = RunBook(automations, self.settings, now)
        self.digests = Digests(self.book.timers)  # open digest windows
        self.cooldowns = Cooldowns()  # artifact automations', per collection (docs/wandb.md)
        self.remembered = remembered or Remembered()  # versions' metadata, shared
        self._digests = {a.name: a.digest for a in automations}
        self._by_name = {a.name: a for a in automations}
        self.ids = ids if ids is not None else PROCESS_IDS
        self.new_id = self.ids.new_id  # looked up once: a firing costs one call
        # Where the scope's runs happened, for `${run_url}` and timer firings' events.
        _, _, place = scope.partition(":")
        self._entity, _, self._project = place.partition("/")

    def reconfigure(self, automations: list[Automation],
                    settings: ScopeSettings | None = None) -> None:
        """Keep the run state of automations whose definition did not change."""
        if settings is not None:
            self.settings = settings
        digests = {a.name: a.digest for a in automations}
        self.book.forget({a.name for a in self.automations if digests.get(a.name) != a.digest})
        self.book.configure(automations, settings)
        self.automations = automations
        self._digests = digests
        self._by_name = {a.name: a for a in automations}

    def restore(self, state: dict[str, list[Any]], now: float, mono: float | None = None
                ) -> None:
        """Start over from committed state (the store's `run_state` of this scope); its
        wall times become monotonic readings, and deadlines count from `mono`."""
        mono = now if mono is None else mono
        state = {name: shifted(rows, STORED_TIMES[name], mono - now) if name in STORED_TIMES else rows
                 for name, rows in state.items()}
        book = RunBook(self.automations, self.settings, mono)
        book.restore(state, self._digests, mono)
        self.book = book
        self.digests = Digests(book.timers)
        self.digests.restore(state.get("digest_windows", ()), state.get("digest_items", ()))
        self.cooldowns.restore(state.get("cooldowns", ()), self.automations)
        if self.scope.startswith("entity:") and "metadata" in state:  # E's keeper
            self.remembered.restore(self.scope, state["metadata"])

    @property
    def keeps_state(self) -> bool:
        """Whether the scope has durable state to restore: runs, or digest windows."""
        return self.book.tracks_runs or len(self.digests) > 0 or any(
            a.digest_spec is not None or (a.artifact is not None and a.cooldown > 0)
            for a in self.automations) or self.scope in self.remembered.keepers

    def next_deadline(self) -> float | None:
        """When the earliest timer of the scope is due (heartbeats, stalls, groups)."""
        return self.book.next_deadline()

    def expire(self, now: float, mono: float | None = None) -> Caused:
        """The timers due at `mono`, evaluated like an event: the executions they cause
        and the state they change (a run crashed, a stall's flag, a group fired) commit
        in one transaction (docs/architecture.md, atomicity)."""
        caused = make_caused(Caused, ([], [], [], False))
        others: list[Key] = []
        mono = now if mono is None else mono
        scope, ids = self.scope, self.ids
        # Named by the owner's clock unless a timer names a cause two owners agree on.
        ids.start(f"{scope}|timer|{now!r}")
        outcomes, groups = self.book.expire(mono, others)
        shift = now - mono
        for outcome in outcomes:
            run = outcome.run
            assert run is not None
            # A crash is one fact about a run's silence since `last_seen`, a stall one
            # about its deadline, whenever (and on whichever cluster node) it is
            # noticed: a new owner that fires it again names it alike (docs/cluster.md).
            if run.state == CRASHED:
                seen = run.last_seen + shift
                ids.start(f"{scope}|crashed {run.run_id} {seen!r}", seen)
            elif outcome.due is not None:
                due = outcome.due + shift
                ids.start(f"{scope}|stalled {run.run_id} {due!r}", due)
            else:
                ids.start(f"{scope}|timer {run.run_id} {now!r}", now)
            self._run_outcome(self._deadline(run.run_id), outcome, now, now, shift, caused)
        for firing in groups:
            self._group_firing(firing, now, shift, caused)
        for kind, key in others:
            if kind == DIGEST:
                self._close_digest(key, now, shift, caused)
        return caused

    def _close_digest(self, window_id: str, now: float, shift: float, caused: Caused) -> None:
        """A digest window's deadline: its digest execution, committed with the
        window's row deleted, so it is created once even across a crash (docs/architecture.md)."""
        window = self.digests.close(window_id)
        if window is None:
            return
        caused.statements.append((CLEAR_DIGEST, [(window.id,)]))
        automation = self._by_name.get(window.automation)
        kind = automation.kind if automation is not None else \
            str(window.items[0].get("event_type", "")) if window.items else ""
        context = digest_context(window, kind, iso(now))
        run_id = context.get("run_id")
        event = self._deadline("")
        if automation is None:
            # Removed by a reload while its window was open: recorded, with nothing to
            # send it with (its firings stay GROUPED, pointing here).
            caused.rows.append(execution_row(
                window.id, window.automation, self.scope, kind, event, "none", None,
                "SKIPPED", f"automation {window.automation!r} is no longer configured",
                context, now, run_id))
            return
        self._record(caused, automation, event, kind, context, now, shift, run_id=run_id,
                     as_is=True)

    def _deadline(self, run_id: str) -> Deadline:
        return Deadline(entity=self._entity, project=self._project, run_id=run_id)

    def _group_firing(self, firing: Firing, now: float, shift: float, caused: Caused) -> None:
        automation = firing.automation
        assert firing.group is not None
        event = self._deadline("")
        # Fired once per group and automation, at the group's settle deadline: named
        # by those, so a new cluster owner that fires it again makes the same id.
        group = self.book.groups.get(firing.group["group"])
        checker = automation.run.group if automation.run else None
        if group is not None and checker is not None:
            due = max(group.joined_at, self.book.started) + checker.settle + shift
            self.ids.start(f"{self.scope}|finished {group.name} {automation.name} {due!r}", due)
        context = group_context(event, automation.name, self.new_id(now), now, firing.description,
                                firing.group)
        self._record(caused, automation, event, automation.kind, context, now, shift)
        caused.statements.append((UPSERT_GROUP, [
            (self.scope, firing.group["group"], automation.name, automation.digest, now)]))

    def evaluate(self, event: Event, event_time: float, now: float,
                 mono: float | None = None) -> Caused:
        """What `event` causes; `now` (wall) names it, `mono` counts its deadlines."""
        if mono is None:
            mono = now
        if event.__class__ is RunMetrics and event.id is None:
            # The hot path: a metric event that changes no condition costs no Caused.
            outcome = self.book.metrics(event, mono)
            if outcome is UNWATCHED:
                return NOTHING
            if outcome is LOGGED:
                return ONLY_LOGGED
            return self.metrics_caused(event, outcome, event_time, now, mono)
        caused = make_caused(Caused, ([], [], [], False))
        if isinstance(event, RunEvent):
            caused = self._run_event(event, event_time, now, mono, caused)
        elif isinstance(event, CollectionEvent):
            self._artifact_event(event, event_time, now, now - mono, caused)
        if event.id is not None:
            # The id commits with what the event caused here, or not at all.
            caused.statements.append((INSERT_EVENT_ID, [(event.id, id_place(self.scope, event.location), now)]))
        return caused

    def metrics_caused(self, event: RunMetrics, outcome: Outcome, event_time: float,
                       now: float, mono: float) -> Caused:
        """What an id-less metric event caused, once `book.metrics` returned an
        Outcome of its own (a condition or the run changed): the rare half of the
        hot path, which BatchWrites also takes after calling the book itself."""
        caused = make_caused(Caused, ([], [], [], outcome.logged))
        self._run_outcome(event, outcome, event_time, now, now - mono, caused)
        return caused

    def log(self, events: list[RunMetrics]) -> Statement:
        """The metric log's row for the events of one write whose values went into rings."""
        return (LOG_METRICS, [(self.scope, metric_log.encode(events))])

    def _artifact_event(self, event: CollectionEvent, event_time: float, now: float,
                        shift: float, caused: Caused) -> None:
        found = occurrences(event)
        metadata = self.remembered.note(self.scope, event, caused.statements)
        for automation in self.automations:
            checker = automation.artifact
            if not automation.enabled or checker is None:
                continue
            for occurrence in found:
                if not checker.matches(event, occurrence):
                    continue
                context = artifact_context(event, occurrence, automation.name, self.new_id(now),
                                           event_time)
                if metadata:
                    context["artifact_metadata"] = metadata
                left = self.cooldowns.left(automation, event.collection, now - shift)
                if left is not None:
                    reason = (f"cooldown: fired for collection {event.collection!r} less than "
                              f"{describe(automation.cooldown)} ago ({describe(left)} left)")
                    self._record(caused, automation, event, occurrence.kind, context, now,
                                 shift, "SKIPPED", reason)
                    continue
                self._record(caused, automation, event, occurrence.kind, context, now, shift)
                fired = self.cooldowns.fire(self.scope, automation, event.collection,
                                             now - shift, shift)
                if fired is not None:
                    caused.statements.append(fired)

    def _run_event(self, event: RunEvent, event_time: float, now: float, mono: float,
                   caused: Caused) -> Caused:
        if isinstance(event, RunMetrics):
            outcome: Outcome = self.book.metrics(event, mono)
            if outcome.logged:
                caused = caused._replace(logged=True)
        elif isinstance(event, RunHeartbeat):
            outcome = self.book.heartbeat(event, mono)
        else:
            assert isinstance(event, RunState)
            outcome = self.book.state(event, mono)
        self._run_outcome(event, outcome, event_time, now, now - mono, caused)
        return caused

    def checkpoint(self, now: float, evict: bool = False, ttl: float = 0.0,
                   mono: float | None = None) -> Checkpointed:
        """The metric windows and runs changed since the last checkpoint, replacing
        the log they make redundant; with `evict`, forget runs ended or silent for `ttl`."""
        book = self.book
        mono = now if mono is None else mono
        if not book.dirty and not evict:
            return Checkpointed([], [])  # nothing logged since the last one
        statements: list[Statement] = [(CLEAR_LOG, [(self.scope,)]),
                                       (CLEAR_OLD_LOG, [(self.scope,)])]
        dirty = [book.runs[r] for r in book.dirty if r in book.runs]
        windows = book.checkpoint()
        if windows:
            statements.append((UPSERT_WINDOW, [(self.scope, *row) for row in windows]))
        if dirty:
            statements.append((UPSERT_RUN, [run_row(self.scope, run, now - mono)
                                            for run in dirty]))
        evicted = book.evict(mono, ttl) if evict else []
        if evicted:
            for sql in FORGET_RUN:
                statements.append((sql, [(self.scope, run_id) for run_id in evicted]))
        return Checkpointed(statements, evicted)
