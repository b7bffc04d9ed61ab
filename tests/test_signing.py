"""Signatures checked against fixed vectors (the Standard Webhooks specification's own,
and ones computed with `openssl dgst -sha256 -mac HMAC`), by the standardwebhooks
reference library, and by hand with hmac: never with the code under test."""

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

OLD = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # the specification's example secret
OLD_KEY = bytes.fromhex("31f290f6bf06298aab4f08d43c3f082cf648a362da2da4b0")
NEW = "whsec_" + base64.b64encode(b"a brand new signing key!").decode()


def test_signature_matches_the_specification_test_vector():
    """The vector every Standard Webhooks library checks: matching it is what lets a
    receiver verify our deliveries with any of them."""
    body = b'{"test": 2432232314}'
    assert standard_signature([signing_key(OLD)], "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330,
                              body) == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_reference_library_verifies_our_signature():
    body = b'{"hello": "world"}'
    now = int(time.time())  # the library refuses timestamps more than 5 minutes off
    headers = {"webhook-id": "ex_1", "webhook-timestamp": str(now),
               "webhook-signature": standard_signature([signing_key(OLD)], "ex_1", now, body)}
    assert standardwebhooks.Webhook(OLD).verify(body, headers) == {"hello": "world"}


def test_signature_matches_the_spec_computed_by_hand():
    expected = base64.b64encode(hmac.new(OLD_KEY, b"ex_9.123.body", hashlib.sha256).digest())
    assert expected == b"yXUZxj5gXFXEgVDLc7sva1OJ6KtxAsm+/+n6A3bI/wg="  # openssl's
    assert standard_signature([OLD_KEY], "ex_9", 123, b"body") == "v1," + expected.decode()


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


def test_whsec_secret_is_its_base64_and_a_plain_one_its_bytes():
    assert signing_key(OLD) == OLD_KEY
    assert signing_key(NEW) == b"a brand new signing key!"
    assert signing_key("plain secret") == b"plain secret"
    with pytest.raises(ValueError, match="not base64"):
        signing_key("whsec_***")


def test_wandb_signature_is_base64_hmac_of_body():
    expected = base64.b64encode(hmac.new(b"k", b"payload", hashlib.sha256).digest()).decode()
    assert expected == "U+HO3VUODmk84Duv5a5CTZ8pJxcBjVhqqt6HdIHcgkw="  # openssl's
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
    # Fixed vectors (openssl) over id ex_3, time 1700000000 and the rendered body: one
    # signature per secret, in the configured order; W&B's with the first secret.
    assert h["webhook-signature"] == ("v1,DfTluQI3xrBjKVYWBhu3pmzIryeynnNglBU0CJ4QiYk= "
                                      "v1,fbEwWQnWqT5SRsO0BXy47fLlNDvxMgFprvYyARkmh7g=")
    assert h["X-Wandb-Signature"] == "qXzUtq5w9AzFsV0Kfu7Gt3gCic95jh3TGaUQWKvllE4="


def test_secret_new_makes_a_secret_standardwebhooks_receivers_verify(capsys):
    """`runhook secret new` prints whsec_ + base64 of 32 random bytes; a receiver
    using the standardwebhooks library verifies what runhook signs with it."""
    import base64
    import time

    import standardwebhooks

    from runhook.cli.main import main
    from runhook.config.secrets import signing_key
    from runhook.delivery.signing import standard_signature

    assert main(["secret", "new"]) == 0
    secret = capsys.readouterr().out.strip()
    assert secret.startswith("whsec_") and len(base64.b64decode(secret[6:])) == 32
    assert main(["secret", "new"]) == 0
    assert capsys.readouterr().out.strip() != secret  # fresh each time
    body, msg_id, now = b'{"v": 1}', "ex_1", int(time.time())
    headers = {"webhook-id": msg_id, "webhook-timestamp": str(now),
               "webhook-signature": standard_signature([signing_key(secret)], msg_id, now, body)}
    assert standardwebhooks.Webhook(secret).verify(body, headers) == {"v": 1}
