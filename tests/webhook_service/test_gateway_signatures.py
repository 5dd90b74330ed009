"""Signature schemes checked against the providers' own code where it exists."""

from __future__ import annotations

import time

import pytest
import stripe as stripe_sdk

from payhook_webhook import signatures
from payhook_webhook.errors import SignatureRefused
from support_gateways import STRIPE_SECRET, stripe_headers

BODY = b'{"id":"evt_1","type":"payment_intent.succeeded"}'


def _stripe_sdk_accepts(header: str, secret: str) -> bool:
    try:
        stripe_sdk.WebhookSignature.verify_header(BODY.decode(), header, secret, tolerance=300)
        return True
    except stripe_sdk.SignatureVerificationError:
        return False


# Each header is made when its test runs, not at collection: a timestamp taken then would be minutes old by the
# time an xdist worker reaches the test, and it would name the test differently in each worker.
@pytest.mark.parametrize("make_header", [
    pytest.param(lambda: stripe_headers(BODY)["Stripe-Signature"], id="valid"),
    pytest.param(lambda: stripe_headers(BODY, "whsec_other")["Stripe-Signature"], id="other-secret"),
    pytest.param(lambda: stripe_headers(BODY, timestamp=int(time.time()) - 600)["Stripe-Signature"], id="too-old"),
    pytest.param(lambda: stripe_headers(BODY)["Stripe-Signature"] + ",v1=" + "0" * 64 + ",v0=abc",
                 id="valid-then-junk"),
    pytest.param(lambda: "t=" + str(int(time.time())) + ",v1=" + "0" * 64 + ","
                 + stripe_headers(BODY)["Stripe-Signature"].split(",")[1], id="junk-then-valid"),
    pytest.param(lambda: "t=abc,v1=00", id="bad-timestamp"),
    pytest.param(lambda: "v1=" + "0" * 64, id="no-timestamp"),
])
def test_stripe_agrees_with_the_stripe_sdk(make_header):
    header = make_header()
    try:
        signatures.verify("stripe", {}, [STRIPE_SECRET], {"Stripe-Signature": header}, BODY)
        ours = True
    except SignatureRefused:
        ours = False
    assert ours == _stripe_sdk_accepts(header, STRIPE_SECRET)


def test_either_rotation_secret_verifies():
    header = {"Stripe-Signature": stripe_headers(BODY, "whsec_old")["Stripe-Signature"]}
    signatures.verify("stripe", {}, ["whsec_new", "whsec_old"], header, BODY)
    with pytest.raises(SignatureRefused):
        signatures.verify("stripe", {}, ["whsec_new"], header, BODY)


def test_hmac_base64_sha512_without_timestamp():
    import base64
    import hashlib
    import hmac

    config = {"header": "X-Sig", "algorithm": "sha512", "encoding": "base64", "prefix": ""}
    sig = base64.b64encode(hmac.new(b"s3cret-value", BODY, hashlib.sha512).digest()).decode()
    signatures.verify("hmac", config, ["s3cret-value"], {"X-Sig": sig}, BODY)
    with pytest.raises(SignatureRefused) as refused:
        signatures.verify("hmac", config, ["s3cret-value"], {"X-Sig": "not base64!"}, BODY)
    assert refused.value.code == "malformed_signature"


@pytest.mark.parametrize("provider, config, headers", [
    ("stripe", {}, {"Stripe-Signature": "t=\u00b2,v1=00"}),
    ("stripe", {}, {"Stripe-Signature": "t=" + "9" * 40 + ",v1=00"}),
    ("hmac", {"header": "X-Sig", "timestamp_header": "X-Ts"}, {"X-Sig": "00", "X-Ts": "\u0661\u0662"}),
    ("standard-webhooks", {}, {"webhook-id": "m", "webhook-timestamp": "\u00b2", "webhook-signature": "v1,AA=="}),
])
def test_odd_timestamps_are_malformed_not_errors(provider, config, headers):
    with pytest.raises(SignatureRefused) as refused:
        signatures.verify(provider, config, ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"], headers, BODY)
    assert refused.value.code == "malformed_signature"
