"""One delivery attempt: the request built at send time, its destination checked, the
POST, and the retry policy's verdict on the answer."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import aiohttp

from runhook.config.model import Integration, SlackIntegration
from runhook.config.settings import Settings
from runhook.core.executions import TEST_AUTOMATION, ExecutionRow, new_id, test_row
from runhook.core.templates import TemplateError
from runhook.delivery import policy, requests, sample, smtp, transport
from runhook.delivery.channels import email, slack
from runhook.delivery.ssrf import DestinationRefused, check_url

Result = tuple[transport.Response | None, policy.Outcome]


class Probed:
    """`runhook test`'s one request as it is recorded: the test execution's row, its
    attempt row, its end state and reason; `answer` is what the command says."""

    __slots__ = ("answer", "attempt", "finished", "reason", "row", "state")

    def __init__(self, answer: dict[str, Any], row: ExecutionRow | None = None,
                 attempt: tuple[Any, ...] = (), state: str = "FAILED",
                 reason: str | None = None, finished: float = 0.0) -> None:
        self.answer = answer
        self.row = row  # None: nothing was sent (a bad payload), nothing to record
        self.attempt = attempt
        self.state = state
        self.reason = reason
        self.finished = finished


async def probe(session: aiohttp.ClientSession, settings: Settings, name: str,
                payload: str | None) -> Probed:
    """One request to integration `name` outside any automation, never retried;
    recording it is the caller's (the database on one machine, the history stream
    in a cluster)."""
    integration = settings.integrations[name]
    now = time.time()
    execution_id = new_id(now)
    # The payload is recorded with it, so `runhook redeliver` can send it again.
    context = sample.context(name, execution_id, now, payload, settings.redactor)
    try:
        request = requests.build(integration, sample.message(integration, payload, name), context,
                                 settings.secrets, execution_id, int(now))
    except TemplateError as exc:
        return Probed({"execution_id": None, "status": None, "error": f"bad payload: {exc}",
                       "response": ""})
    response, outcome = await post(session, settings, integration, request, 1)
    state = "FINISHED" if outcome.state == "FINISHED" else "FAILED"
    reason = settings.redactor(outcome.reason) if outcome.reason else None
    body = response.body if response else ""
    finished = time.time()
    status = response.status if response else None
    return Probed({"execution_id": execution_id, "status": status, "error": reason,
                   "response": body},
                  test_row(execution_id, name, sample.kind(integration), context, now),
                  (execution_id, 1, now, (finished - now) * 1000.0, status, reason,
                   body or None), state, reason, finished)


async def send(session: aiohttp.ClientSession, settings: Settings, integration_name: str,
               automation_name: str, context: Mapping[str, Any], execution_id: str,
               number: int) -> Result:
    """Attempt `number` (of this redelivery round) of an execution. The request is
    built from the settings of now, so a reload reaches PENDING executions too."""
    integration = settings.integrations.get(integration_name)
    test = automation_name == TEST_AUTOMATION  # `runhook test`'s, redelivered
    automation = None if test else settings.automation(automation_name)
    if integration is None or (automation is None and not test):
        missing = f"integration {integration_name!r}" if integration is None \
            else f"automation {automation_name!r}"
        return None, policy.Outcome("FAILED", reason=f"{missing} is no longer configured",
                                    config_error=True)
    try:
        request = requests.for_execution(integration,
                                         automation.action if automation is not None else None,
                                         context, settings.secrets, execution_id,
                                         int(time.time()))
    except sample.Unsendable as exc:
        return None, policy.Outcome("FAILED", reason=f"cannot send it again: {exc}",
                                    config_error=True)
    except (TemplateError, KeyError, ValueError) as exc:
        return None, policy.Outcome("FAILED", reason=f"cannot build the request: {exc}")
    return await post(session, settings, integration, request, number)


async def post(session: aiohttp.ClientSession, settings: Settings, integration: Integration,
               request: requests.Outgoing, number: int) -> Result:
    """Send `request` once (POST it, or submit a mail), unless its destination is
    refused; the answer is judged as attempt `number` (which decides the retry delay)."""
    if isinstance(request, email.Mail):
        response = await smtp.send(request, integration.timeout, integration.allow_private,
                                   settings.redactor)
        if response.error is None:
            return response, policy.Outcome("FINISHED")
        # An SMTP code is no HTTP status: the verdict goes on the error alone.
        return response, policy.decide(number, None, response.error, None, response.refused)
    try:
        check_url(request.url, integration.allow_http, integration.allow_private)
    except DestinationRefused as exc:
        return None, policy.Outcome("FAILED", reason=f"destination refused: {exc}")
    response = await transport.post(session, request, integration.timeout, settings.redactor)
    status, error = response.status, response.error
    if status is not None and isinstance(integration, SlackIntegration):
        status, error = slack.interpret(status, response.body)
    retry_after = policy.parse_retry_after(response.retry_after, time.time())
    return response, policy.decide(number, status, error, retry_after, response.refused)
