"""Which executions `runhook redeliver` may send again under the running configuration (pure)."""

from __future__ import annotations

from runhook.config.settings import Settings
from runhook.core.executions import TEST_AUTOMATION
from runhook.delivery import sample
from runhook.store.rows import Execution

# `--failed` replays what events are owed. A test execution was a probe someone
# ran by hand: a batch retry must not replay every `runhook test` of the day.
TEST_LEFT_OUT = "a test execution; redeliver it by id"


def refusal(execution: Execution, settings: Settings) -> str | None:
    """Why `execution` cannot be sent again now, or None. Asked before anything is
    queued, so a redelivery is never answered "queued" and then failed for a reason
    the configuration already gave."""
    if execution.integration is None:
        return "it has no integration to deliver to"
    if execution.state == "GROUPED":
        # Sent inside its digest; sent alone it would be the message the digest spared.
        return f"it is part of digest {execution.digest_id}; redeliver that"
    integration = settings.integrations.get(execution.integration)
    if integration is None:
        return f"integration {execution.integration!r} is no longer configured"
    if execution.automation == TEST_AUTOMATION:
        return sample.unsendable(execution.context, execution.action_kind, integration)
    if settings.automation(execution.automation) is None:
        return f"automation {execution.automation!r} is no longer configured"
    return None


def note(execution: Execution) -> str | None:
    """What to tell whoever redelivers `execution` by id, beyond "queued": that it
    was held back (silenced, or a cooldown) and goes out now all the same. A redelivery
    by id is someone asking for this one message, so it is sent, not refused: as with
    Alertmanager, a silence mutes what fires, not what a person asks for by name."""
    if execution.state != "SKIPPED":
        return None
    return (f"{execution.id} was not sent when it fired ({execution.reason or 'SKIPPED'}); "
            "it is sent now anyway")


def sort_failed(executions: list[Execution],
                settings: Settings) -> tuple[list[Execution], dict[str, str]]:
    """`--failed`: the executions to queue again, and those left out with why."""
    chosen: list[Execution] = []
    left_out: dict[str, str] = {}
    for execution in executions:
        why = TEST_LEFT_OUT if execution.automation == TEST_AUTOMATION \
            else refusal(execution, settings)
        if why is None:
            chosen.append(execution)
        else:
            left_out[execution.id] = why
    return chosen, left_out
