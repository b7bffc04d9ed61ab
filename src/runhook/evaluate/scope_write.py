"""How a scope actor turns a run of batches into one write: each event evaluated, what
they caused grouped by statement, and the commit's callback that settles the tickets'
parts and offers the jobs to delivery once committed."""

from __future__ import annotations

import logging
from typing import Any, Protocol

from runhook.core.acks import Ticket, id_place
from runhook.core.bounds import AtBound, hit
from runhook.core.clock import Clock
from runhook.core.events import RunEvent, RunMetrics
from runhook.core.executions import ExecutionRow, Job
from runhook.core.metrics import Metrics
from runhook.evaluate.caused import NOTHING, ONLY_LOGGED
from runhook.evaluate.evaluator import Evaluator
from runhook.evaluate.inbox import Batch, Streamed
from runhook.evaluate.run import LOGGED, UNWATCHED
from runhook.store.database import Write
from runhook.store.statements import INSERT_EXECUTION, INSERT_GROUPED

log = logging.getLogger("runhook.scope")
# How a line whose evaluation raised is refused (cluster mode tells it from a failed commit).
EVALUATION_FAILED = "internal error evaluating the event"


class Offers(Protocol):
    """Where committed executions go to be delivered (delivery's Deliveries)."""

    def offer(self, job: Job) -> None: ...


class BatchWrites:
    """The part of a ScopeActor that evaluates: a run of batches into one Write, whose
    callback settles each ticket's part, and offers the jobs only once it committed."""

    scope: str
    evaluator: Evaluator
    clock: Clock
    executions: int
    _metrics: Metrics | None
    _deliveries: Offers

    def _prepare(self, work: list[tuple[Batch | Streamed, Ticket]], first_batch: int,
                 first_item: int) -> tuple[Write | None, tuple[int, int] | None, bool]:
        """Evaluate as _evaluate_run says; returns the write (None: nothing to write,
        the tickets' parts are done), where to go on, and whether the book must be
        reloaded (an event failed half-way)."""
        # Statements grouped by SQL, first-seen order kept: each table's rows keep
        # event order, and the work costs one executemany per table.
        grouped: dict[str, list[Any]] = {}
        jobs: list[Job] = []
        logged: list[RunMetrics] = []  # their values went into rings: one log blob
        evaluate, ids, scope = self.evaluator.evaluate, self.evaluator.ids, self.scope
        # Nothing in one _prepare replaces the book (only a restore does).
        book_metrics, metrics_caused = self.evaluator.book.metrics, self.evaluator.metrics_caused
        clock_now = self.clock.wall(), self.clock.monotonic()
        parts: list[tuple[Ticket, Batch]] = []  # each ticket's events in this write
        failed: tuple[int, int] | None = None
        failed_batch: Batch = []
        failed_run = False
        for index in range(first_batch, len(work)):
            batch_or_streamed, ticket = work[index]
            received: list[float] | None = None
            if isinstance(batch_or_streamed, Streamed):
                batch, received = batch_or_streamed
            else:
                batch = batch_or_streamed
            now, mono = clock_now
            start = first_item if index == first_batch else 0
            parts.append((ticket, batch if start == 0 else batch[start:]))
            for position, (event, event_time, line_no) in enumerate(parts[-1][1], start):
                if received is not None:
                    # Named by its place in the stream and its publisher's time: an
                    # owner evaluating it again names what it causes alike.
                    now = mono = received[position]
                    ids.start(f"{scope}|{line_no}")
                try:
                    if event.__class__ is RunMetrics and event.id is None:
                        # Evaluator.evaluate's hot path, without its call: the book
                        # says LOGGED (values into rings, nothing else) or UNWATCHED
                        # for almost every event of a run of metrics.
                        outcome = book_metrics(event, mono)
                        if outcome is LOGGED:
                            logged.append(event)
                            continue
                        if outcome is UNWATCHED:
                            continue
                        caused = metrics_caused(event, outcome, event_time, now,
                                                mono)
                    else:
                        caused = evaluate(event, event_time, now, mono)
                except AtBound as exc:  # refused before it changed anything: no reload
                    hit(exc.bound, f"scope {self.scope}: line {line_no}: {exc}")
                    ticket.fail(line_no, str(exc), None if event.id is None
                                else (event.id, id_place(self.scope, event.location)))
                    continue
                except Exception as exc:  # a bug in one evaluation must not stop the scope
                    log.exception("scope %s: evaluating line %d failed", self.scope, line_no)
                    ticket.fail(line_no, f"{EVALUATION_FAILED}: {exc!r}",
                                None if event.id is None
                                else (event.id, id_place(self.scope, event.location)))
                    failed, failed_batch = (index, position), batch
                    failed_run = isinstance(event, RunEvent)
                    break
                if caused is ONLY_LOGGED:  # the common case: values in rings, nothing else
                    logged.append(event)  # type: ignore[arg-type]
                    continue
                if caused is NOTHING:
                    continue
                rows, statements, event_jobs, was_logged = caused
                if was_logged:
                    logged.append(event)  # type: ignore[arg-type]
                if rows:
                    grouped.setdefault(INSERT_EXECUTION, []).extend(rows)
                    jobs.extend(event_jobs)
                for sql, params in statements:
                    grouped.setdefault(sql, []).extend(params)
            if failed is not None:
                break
        if logged:
            sql, params = self.evaluator.log(logged)
            grouped[sql] = list(params)
        for sql in (INSERT_EXECUTION, INSERT_GROUPED):
            created = grouped.get(sql)
            if created:
                self._created(created)
        after: tuple[int, int] | None = None
        if failed is not None:
            index, position = failed
            ticket = work[index][1]
            start = first_item if index == first_batch else 0
            # The failed one is refused already.
            parts[-1] = (ticket, failed_batch[start:position + 1])
            if position + 1 < len(failed_batch):
                after = (index, position + 1)
                ticket.pending += 1  # its events go in this write and a later one
            elif index + 1 < len(work):
                after = (index + 1, 0)
        write = None
        if not grouped:
            for ticket, _ in parts:
                ticket.done()
        else:
            # Flags, cooldowns, logged values and ids commit with the executions.
            write = Write(list(grouped.items()), self._committed(parts, jobs))
        # An event that failed half-way may have changed runs or digest windows.
        resync = failed is not None and (failed_run or self.evaluator.keeps_state)
        return write, after, resync

    def _created(self, rows: list[ExecutionRow]) -> None:
        """Count and log the executions a batch created (they commit with it or not at all)."""
        self.executions += len(rows)
        if self._metrics is not None:
            for row in rows:
                self._metrics.execution(row.automation, row.state)
        # DEBUG: at thousands a second a line each would cost a third of the firing
        # rate; `runhook history` has every execution and the INFO log a summary.
        if log.isEnabledFor(logging.DEBUG):
            for row in rows:
                log.debug("execution %s created: %s %s in %s -> %s", row.id,
                          row.automation, row.event_kind, self.scope, row.state)

    def _committed(self, parts: list[tuple[Ticket, Batch]], jobs: list[Job]) -> Any:
        """The write's callback: each ticket's part is over; its jobs go to delivery
        once committed. On failure only the lines and ids this write carried are refused.
        It keeps those, not the events, which are then freed while still in the CPU's
        cache rather than at the commit, milliseconds later (0.2-0.4 us a line less)."""
        carried = [(ticket, [line_no for _, _, line_no in batch],
                    [(e.id, id_place(self.scope, e.location)) for e, _, _ in batch
                     if e.id is not None])
                   for ticket, batch in parts]

        def committed(error: str | None) -> None:
            for ticket, lines, keys in carried:
                if error is None:
                    ticket.done()
                else:
                    ticket.done(error, lines, keys)
            if error is None:
                for job in jobs:
                    self._deliveries.offer(job)
        return committed
