"""Signatures checked by the standardwebhooks reference library and by hand."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

import pytest
import standardwebhooks

from runhook.config.model import WebhookIntegration
from runhook.config.secrets import signing_key
from runhook.core.templates import Payload
from runhook.delivery.channels import webhook
from runhook.delivery.signing import standard_signature, wandb_signature

OLD = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
NEW = "whsec_" + base64.b64encode(b"a brand new signing key!").decode()


def test_reference_library_verifies_our_signature():
    body = b'{"hello": "world"}'
    now = int(time.time())  # the library refuses timestamps more than 5 minutes off
    headers = {"webhook-id": "ex_1", "webhook-timestamp": str(now),
               "webhook-signature": standard_signature([signing_key(OLD)], "ex_1", now, body)}
    assert standardwebhooks.Webhook(OLD).verify(body, headers) == {"hello": "world"}


def test_signature_matches_the_spec_computed_by_hand():
    key = base64.b64decode(OLD[len("whsec_"):])
    expected = base64.b64encode(hmac.new(key, b"ex_9.123.body", hashlib.sha256).digest())
    assert standard_signature([key], "ex_9", 123, b"body") == "v1," + expected.decode()


def test_rotation_sends_both_and_either_secret_verifies():
    body = b"{}"
    now = int(time.time())
    sig = standard_signature([signing_key(OLD), signing_key(NEW)], "ex_2", now, body)
    assert len(sig.split(" ")) == 2
    headers = {"webhook-id": "ex_2", "webhook-timestamp": str(now), "webhook-signature": sig}
    for secret in (OLD, NEW):
        assert standardwebhooks.Webhook(secret).verify(body, headers) == {}
    stranger = standardwebhooks.Webhook("whsec_" + base64.b64encode(b"x" * 24).decode())
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        stranger.verify(body, headers)


def test_plain_secret_is_used_as_its_bytes():
    assert signing_key("plain secret") == b"plain secret"
    with pytest.raises(ValueError, match="not base64"):
        signing_key("whsec_***")


def test_wandb_signature_is_base64_hmac_of_body():
    expected = base64.b64encode(hmac.new(b"k", b"payload", hashlib.sha256).digest()).decode()
    assert wandb_signature(b"k", b"payload") == expected


def test_webhook_request_headers():
    integration = WebhookIntegration(url="https://example.com/h", access_token="TOK",
                                     signing_secret=["OLD", "NEW"], signature="wandb",
                                     headers={"X-Team": "ml"})
    request = webhook.build(integration, Payload('{"v": "${tag}"}'), {"tag": "best"},
                            {"TOK": "t0k", "OLD": OLD, "NEW": NEW}, "ex_3", 1700000000)
    assert request.body == b'{"v":"best"}'
    h = request.headers
    assert h["Authorization"] == "Bearer t0k"
    assert h["webhook-id"] == "ex_3" and h["webhook-timestamp"] == "1700000000"
    assert h["X-Team"] == "ml" and h["Content-Type"] == "application/json"
    assert h["X-Wandb-Signature"] == wandb_signature(signing_key(OLD), request.body)
    assert len(h["webhook-signature"].split()) == 2
