"""`runhook test`'s request and its redelivery (delivery/sample.py), and which executions
`runhook redeliver` accepts (redelivery.py): pure, values written out by hand."""

from __future__ import annotations

import json
from typing import Any

import pytest

from runhook.config.model import SlackIntegration, WebhookIntegration, decode
from runhook.config.secrets import Redactor
from runhook.config.settings import build
from runhook.delivery import requests, sample
from runhook.delivery.redelivery import TEST_LEFT_OUT, refusal, sort_failed
from runhook.store.rows import Execution

HOOK = WebhookIntegration(url="https://ci.example.com/hook", secrets=["TOKEN"])
SLACK = SlackIntegration(url_secret="SLACK_URL")
SECRETS = {"TOKEN": "tok-123456", "SLACK_URL": "https://hooks.slack.example/T/B/x"}
redact = Redactor(SECRETS)
NOW = 1_700_000_000.0  # 2023-11-14T22:13:20Z


def test_context_records_the_payload_as_given():
    context = sample.context("ci", "ex_1", NOW, '{"t": "${TOKEN}"}', redact)
    assert context == {"event_type": "TEST", "automation_name": "(test)", "execution_id": "ex_1",
                       "event_time": "2023-11-14T22:13:20.000Z", "integration": "ci",
                       "test_payload": '{"t": "${TOKEN}"}'}


def test_context_without_payload_records_none():
    context = sample.context("ci", "ex_1", NOW, None, redact)
    assert context["test_payload"] is None and "test_payload_withheld" not in context


def test_context_never_holds_a_secret_value():
    context = sample.context("ci", "ex_1", NOW, '{"t": "tok-123456"}', redact)
    assert context["test_payload"] == '{"t": "[secret TOKEN]"}'
    assert context["test_payload_withheld"] is True


def test_webhook_payload_is_rendered_with_allowed_secrets():
    context = sample.context("ci", "ex_1", NOW, '{"t": "${TOKEN}", "id": "${execution_id}"}',
                            redact)
    request = requests.build(HOOK, sample.message(HOOK, context["test_payload"]), context,
                             SECRETS, "ex_1", 1700000000)
    assert json.loads(request.body) == {"t": "tok-123456", "id": "ex_1"}
    assert request.headers["webhook-id"] == "ex_1"
    assert request.url == "https://ci.example.com/hook"


def test_webhook_without_payload_sends_the_envelope():
    context = sample.context("ci", "ex_1", NOW, None, redact)
    request = requests.build(HOOK, sample.message(HOOK, None), context, SECRETS, "ex_1",
                             1700000000)
    assert json.loads(request.body) == {
        "type": "TEST", "timestamp": "2023-11-14T22:13:20.000Z",
        "data": {"event_type": "TEST", "automation_name": "(test)", "execution_id": "ex_1",
                 "event_time": "2023-11-14T22:13:20.000Z", "integration": "ci"}}


@pytest.mark.parametrize("payload, text", [("model *ready*", "model *ready*"),
                                           (None, "A test message from runhook.")])
def test_slack_gets_the_payload_as_text(payload, text):
    context = sample.context("alerts", "ex_2", NOW, payload, redact)
    request = requests.build(SLACK, sample.message(SLACK, payload), context, SECRETS, "ex_2",
                             1700000000)
    body = json.loads(request.body)
    assert request.url == "https://hooks.slack.example/T/B/x"
    assert body["text"] == "runhook test"
    assert body["attachments"][0]["color"] == "#2eb886"  # INFO
    assert body["attachments"][0]["blocks"][1]["text"]["text"] == text


def test_rebuild_sends_what_the_test_sent():
    context = sample.context("ci", "ex_1", NOW, '{"ping": 1}', redact)
    request = requests.for_execution(HOOK, None, context, SECRETS, "ex_1", 1700000005)
    assert request.body == b'{"ping":1}'


@pytest.mark.parametrize("context, reason", [
    ({"integration": "ci", "test_payload": "[secret TOKEN]", "test_payload_withheld": True},
     ("its payload held a secret's value, which runhook never stores; refer to secrets as "
      "${NAME} in a test payload, or run `runhook test` again")),
    ({"integration": "ci"},
     "it was recorded before runhook kept test payloads; run `runhook test` again"),
])
def test_what_cannot_be_sent_again(context, reason):
    assert sample.unsendable(context, "webhook", HOOK) == reason
    with pytest.raises(sample.Unsendable, match="runhook test"):
        requests.for_execution(HOOK, None, context, SECRETS, "ex_1", 1700000000)


def test_a_test_of_another_kind_is_not_sent_again():
    context = {"integration": "ci", "test_payload": None}
    assert sample.unsendable(context, "webhook", HOOK) is None
    assert sample.unsendable(context, "slack", HOOK) == (
        "it tested a slack integration and 'ci' is now a webhook one; "
        "run `runhook test ci` again")


SETTINGS = build(decode("""
[integrations.ci]
kind = "webhook"
url = "https://ci.example.com/hook"

[[automations]]
name = "deploy"
scope = "registry:acme/model"
event = { kind = "ADD_ARTIFACT_ALIAS" }
action = { integration = "ci" }
"""))


def row(id: str, automation: str = "deploy", integration: str | None = "ci",
        context: dict[str, Any] | None = None) -> Execution:
    return Execution(id=id, automation=automation, scope="-", event_kind="TEST",
                     event_type="command.test", event_id=None, action_kind="webhook",
                     integration=integration, state="FAILED", reason="HTTP 500",
                     context=context or {}, run_id=None, created_at=NOW, updated_at=NOW,
                     next_attempt_at=None, attempts=1)


TEST_OK = {"integration": "ci", "test_payload": None}


@pytest.mark.parametrize("execution, reason", [
    (row("ex_a"), None),
    (row("ex_t", "(test)", context=TEST_OK), None),
    (row("ex_n", integration=None), "it has no integration to deliver to"),
    (row("ex_i", integration="gone"), "integration 'gone' is no longer configured"),
    (row("ex_g", "gone"), "automation 'gone' is no longer configured"),
    (row("ex_o", "(test)", context={"integration": "ci"}),
     "it was recorded before runhook kept test payloads; run `runhook test` again"),
])
def test_refusal(execution, reason):
    assert refusal(execution, SETTINGS) == reason


def test_failed_leaves_out_test_executions_and_what_cannot_be_sent():
    chosen, left_out = sort_failed([row("ex_a"), row("ex_t", "(test)", context=TEST_OK),
                                    row("ex_g", "gone"), row("ex_b")], SETTINGS)
    assert [e.id for e in chosen] == ["ex_a", "ex_b"]
    assert left_out == {"ex_t": TEST_LEFT_OUT,
                        "ex_g": "automation 'gone' is no longer configured"}
