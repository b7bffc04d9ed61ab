"""Template rendering: JSON-safe substitution whatever the values hold."""

from __future__ import annotations

import json
import math

import pytest

from runhook.core.templates import Payload, TemplateError, Text, envelope, unknown_variables

HOSTILE = [
    'quote " inside',
    "back\\slash \\\" and \\n literal",
    "new\nline\r\tand tab",
    "unicode ünïcødé 模型 🚀 \u2028 separator",
    '"}, "injected": {"x": "',
    "${run_name} looks like a placeholder",
    "\x00\x01 control",
]


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_strings_stay_valid_json(value):
    payload = Payload('{"text": "run ${run_name} by ${event_author}!", "run": ["${run_name}"]}')
    body = payload.render({"run_name": value, "event_author": value}, {})
    document = json.loads(body)  # valid JSON, or this raises
    assert document == {"text": f"run {value} by {value}!", "run": [value]}


def test_whole_placeholder_keeps_its_type():
    payload = Payload('{"index": "${artifact_version_index}", "values": "${metric_values}",'
                      ' "meta": "${artifact_metadata.lr}", "text": "v${artifact_version_index}"}')
    body = payload.render({"artifact_version_index": 7, "metric_values": [1.5, 2.0],
                           "artifact_metadata": {"lr": 0.001}}, {})
    assert json.loads(body) == {"index": 7, "values": [1.5, 2.0], "meta": 0.001, "text": "v7"}


def test_known_variable_that_does_not_apply_renders_empty():
    payload = Payload('{"run": "${run_name}", "line": "alias=${alias};", "meta": '
                      '"${artifact_metadata.missing}"}')
    assert json.loads(payload.render({}, {})) == {"run": "", "line": "alias=;", "meta": ""}


def test_numbers_inside_a_longer_string_read_for_people():
    text = Text("values: ${metric_values}")
    assert text.render({"metric_values": [1, 2.5]}, {}) == "values: [1, 2.5]"
    assert text.render({"metric_values": [0.1 + 0.2, 1 / 3, -math.inf]}, {}) == \
        "values: [0.3, 0.333333, -inf]"
    assert Text("x ${artifact_metadata.acc}").render(
        {"artifact_metadata": {"acc": 0.1 + 0.2}}, {}) == "x 0.3"
    # A placeholder that is a whole string keeps the exact typed value.
    assert json.loads(Payload('{"v": "${metric_values}"}').render(
        {"metric_values": [0.1 + 0.2]}, {})) == {"v": [0.1 + 0.2]}
    # Anything else inside a string is JSON, as before.
    assert Text("m ${artifact_metadata}").render(
        {"artifact_metadata": {"a": [1, "x"]}}, {}) == 'm {"a":[1,"x"]}'


def test_non_string_json_passes_through_untouched():
    payload = Payload('{"n": 1, "f": 2.5, "b": true, "z": null, "l": [1, "${tag}"], "e": {}}')
    assert json.loads(payload.render({"tag": "t"}, {})) == {
        "n": 1, "f": 2.5, "b": True, "z": None, "l": [1, "t"], "e": {}}


def test_secret_renders_only_when_passed_in():
    payload = Payload('{"auth": "token ${GH_TOKEN}"}')
    assert payload.variables == {"GH_TOKEN"}
    assert json.loads(payload.render({}, {"GH_TOKEN": "s3cr3t"})) == {"auth": "token s3cr3t"}


def test_dollar_dollar_escapes():
    assert Text("cost $$5 ${tag}").render({"tag": "x"}, {}) == "cost $5 x"


def test_unknown_variables_are_reported():
    payload = Payload('{"a": "${run_nmae} ${run_name} ${artifact_metadata.k} ${GH_TOKEN}"}')
    assert unknown_variables(payload.variables, frozenset()) == ["GH_TOKEN", "run_nmae"]
    assert unknown_variables(payload.variables, frozenset({"GH_TOKEN"})) == ["run_nmae"]


@pytest.mark.parametrize("source", ['{"a": ${run_name}}', '{"a": "x"', "not json"])
def test_payload_that_is_not_json_is_refused(source):
    with pytest.raises(TemplateError, match="not valid JSON"):
        Payload(source)


def test_bad_placeholder_is_refused():
    with pytest.raises(TemplateError, match="bad placeholder"):
        Text("${has space}")


def test_envelope_holds_every_variable_that_applies():
    body = json.loads(envelope({"event_type": "CREATE_ARTIFACT", "event_time": "2026-01-01T00:00:00Z",
                                "alias": None, "entity_name": "acme", "tag": ""}))
    assert body == {"type": "CREATE_ARTIFACT", "timestamp": "2026-01-01T00:00:00Z",
                    "data": {"event_type": "CREATE_ARTIFACT",
                             "event_time": "2026-01-01T00:00:00Z", "entity_name": "acme"}}


@pytest.mark.parametrize("source, where", [
    ('{"${event_author}": "x", "approved_by": "ci"}', "$"),
    ('{"client_payload": {"by-${run_name}": 1}}', "$.client_payload"),
    ('[1, {"ok": true, "${tag}": 2}]', "$[1]"),
])
def test_placeholder_in_an_object_key_is_refused(source, where):
    # A rendered key could collide with a fixed one: {"${event_author}": …,
    # "approved_by": …} sent by an author named "approved_by" overwrites it.
    with pytest.raises(TemplateError) as caught:
        Payload(source)
    assert str(caught.value).startswith(f"placeholder in an object key at {where}: keys are fixed")


def test_escaped_dollar_in_a_key_is_a_literal():
    assert json.loads(Payload('{"cost$$": "${tag}"}').render({"tag": "t"}, {})) == {"cost$": "t"}
