"""How what fired becomes executions in one scope: a run's outcome into its row, its
crossing flags and its firings' executions; each firing silenced, grouped into a digest
window, or recorded to be sent (a resolve, a digest: as they are). Pure, no clock."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from runhook.config.settings import Automation, ScopeSettings
from runhook.core.bounds import hit
from runhook.core.durations import describe
from runhook.core.events import Event, RunEvent
from runhook.core.executions import (
    EVENT_ACTION,
    RESOLVE,
    RESOLVING_KINDS,
    Job,
    execution_row,
    grouped_row,
    iso,
    run_context,
)
from runhook.core.identity import run_url
from runhook.evaluate.caused import Caused, run_row, shifted
from runhook.evaluate.digests import Digests
from runhook.evaluate.run import Outcome
from runhook.store.statements import INSERT_GROUPED, OPEN_DIGEST, UPSERT_FLAG, UPSERT_RUN
from runhook.triggers.crossing import SKIP
from runhook.triggers.silences import Silences, silenced_by


class Recorder:
    """The part of an Evaluator that records: what an event or a timer made fire goes
    into its Caused as execution rows, statements and jobs."""

    scope: str
    settings: ScopeSettings
    silences: Silences
    digests: Digests
    _digests: dict[str, str]
    _entity: str
    _project: str
    new_id: Callable[[float | None], str]

    def _run_outcome(self, event: RunEvent, outcome: Outcome, event_time: float, now: float,
                     shift: float, caused: Caused) -> None:
        """`shift`: wall minus monotonic now, for the book's times that get recorded."""
        run = outcome.run
        if run is None:
            return  # no automation of this scope watches the run
        statements = caused.statements
        if outcome.state_changed:
            statements.append((UPSERT_RUN, [run_row(self.scope, run, shift)]))
        if outcome.flags:
            digests = self._digests
            statements.append((UPSERT_FLAG, [
                (self.scope, run.run_id, name, digests[name], int(active),
                 None if fired_at is None else fired_at + shift)
                for name, active, fired_at in outcome.flags]))
        url = run_url(self.settings.run_url, self._entity, self._project, run) \
            if self.settings.run_url else ""
        for firing in outcome.firings:
            automation = firing.automation
            context = run_context(event, automation.name, automation.kind, self.new_id(now),
                                  event_time, run.state, firing.description,
                                  firing.metric, firing.values, run, url)
            if firing.action == SKIP:
                reason = (f"cooldown: fired less than {describe(automation.cooldown)} ago "
                          f"({describe(firing.cooldown_left)} left)")
                self._record(caused, automation, event, automation.kind, context, now, shift,
                             "SKIPPED", reason, run.run_id)
            elif firing.recovery and automation.action.kind in RESOLVING_KINDS \
                    and automation.digest_spec is None:
                # The incident the crash opened is closed (as a cleared condition's).
                context[EVENT_ACTION] = RESOLVE
                self._record(caused, automation, event, automation.kind, context, now, shift,
                             reason=firing.reason, run_id=run.run_id, as_is=True)
            else:
                self._record(caused, automation, event, automation.kind, context, now, shift,
                             reason=firing.reason, run_id=run.run_id)
        for cleared in outcome.cleared or ():
            # The condition that fired turned false: a channel that opened an incident
            # for it is told to resolve it. Never silenced: closing is always safe.
            automation = cleared.automation
            # With a digest the incident is the key's, not one run's: a run that
            # recovers does not close it (pagerduty.dedup_key), so no resolve.
            if automation.action.kind in RESOLVING_KINDS and automation.digest_spec is None:
                context = run_context(event, automation.name, automation.kind, self.new_id(now),
                                      event_time, run.state, cleared.description,
                                      cleared.metric, cleared.values, run, url)
                context[EVENT_ACTION] = RESOLVE
                self._record(caused, automation, event, automation.kind, context, now, shift,
                             run_id=run.run_id, as_is=True)

    def _record(self, caused: Caused, automation: Automation, event: Event, kind: str,
                context: dict[str, Any], now: float, shift: float, state: str | None = None,
                reason: str | None = None, run_id: str | None = None,
                as_is: bool = False) -> None:
        """One execution; a firing (not `as_is`: a resolve or a digest, sent as they
        are) is first checked against silences, then joins its digest if it has one,
        whose window closes on the monotonic clock (`now - shift`)."""
        action = automation.action
        if state is None and not as_is and self.silences.all:
            silence = silenced_by(self.silences.all, automation.name, context, now)
            if silence is not None:
                state, reason = "SKIPPED", silence.reason()  # a silence wins over a digest
        spec = automation.digest_spec
        if state is None and not as_is and spec is not None and \
                len(self.digests) >= self.settings.max_digest_windows and \
                not self.digests.is_open(automation.name, spec, context):
            # At the bound a new key's firing is sent at once as a digest of one: an
            # alert is never dropped or refused for want of a window, only not grouped.
            reason = (f"sent alone, not grouped: this scope has {len(self.digests)} open "
                      "digest windows, the most [server] max_digest_windows_per_scope allows")
            hit("digest_windows", f"scope {self.scope}: automation {automation.name!r}: a firing "
                                  f"{reason}")
            context = self.digests.alone(automation.name, spec, context, kind, iso(now), now)
            spec = None
        if state is None and not as_is and spec is not None:
            window, opened = self.digests.join(automation.name, spec, context, now - shift,
                                               self.new_id(now))
            if opened:
                caused.statements.append((OPEN_DIGEST, shifted([window.row(self.scope)],
                                                               (4, 5), shift)))
            row = execution_row(context["execution_id"], automation.name, self.scope, kind,
                                event, action.kind, action.integration, "GROUPED",
                                f"grouped into digest {window.id}", context, now, run_id)
            caused.statements.append((INSERT_GROUPED, [grouped_row(row, window.id)]))
            return
        if state is None:
            state = "PENDING" if action.integration is not None else "FINISHED"
            if action.integration is None:
                reason = reason or "recorded only (action kind = none)"
        execution_id = context["execution_id"]
        caused.rows.append(execution_row(execution_id, automation.name, self.scope, kind, event,
                                         action.kind, action.integration, state, reason,
                                         context, now, run_id))
        if state == "PENDING" and action.integration is not None:
            caused.jobs.append(Job(execution_id, automation.name, action.integration, context,
                                   0, now))
