"""Gateway sources end to end: signed callbacks accepted once, everything else refused with nothing stored."""

from __future__ import annotations

import json
import time

import pytest
from sqlalchemy import func, select

from factories import fixture_bytes, make_source, merchant_with_endpoints
from payhook_shared.priority import Priority
from payhook_shared.store import Delivery, Email, Event
from support_gateways import (
    FLUTTERWAVE_SECRET, HMAC_CONFIG, HMAC_SECRET, PAYSTACK_SECRET, STANDARD_SECRET, STRIPE_SECRET,
    flutterwave_headers, flutterwave_legacy_headers, hmac_headers, paystack_headers, standard_headers,
    stripe_headers,
)

GENERIC_BODY = json.dumps({"type": "shop.payment", "id": "pay_981",
                           "data": {"status": "succeeded", "amount": "250.50", "currency": "KES"},
                           "customer_email": "buyer@shop.example"}).encode()

# provider, secret, signer, body, config, expected (type, status, amount_minor, currency), signs time
CASES = {
    "stripe": ("stripe", STRIPE_SECRET, stripe_headers, fixture_bytes("stripe/payment_intent_succeeded.json"), {},
               ("stripe.payment_intent.succeeded", "succeeded", 2000, "USD"), True),
    "paystack": ("paystack", PAYSTACK_SECRET, paystack_headers, fixture_bytes("paystack/charge_success.json"), {},
                 ("paystack.charge.success", "succeeded", 10000, "NGN"), False),
    "flutterwave": ("flutterwave", FLUTTERWAVE_SECRET, flutterwave_headers,
                    fixture_bytes("flutterwave/charge_completed.json"), {},
                    ("flutterwave.charge.completed", "succeeded", 10000, "NGN"), False),
    "flutterwave-verif-hash": ("flutterwave", FLUTTERWAVE_SECRET, flutterwave_legacy_headers,
                               fixture_bytes("flutterwave/charge_completed_failed.json"), {},
                               ("flutterwave.charge.completed", "failed", 250050, "KES"), False),
    "standard-webhooks": ("standard-webhooks", STANDARD_SECRET, standard_headers, GENERIC_BODY, {},
                          ("shop.payment", "succeeded", 25050, "KES"), True),
    "hmac": ("hmac", HMAC_SECRET, hmac_headers, GENERIC_BODY, {"hmac": HMAC_CONFIG},
             ("shop.payment", "succeeded", 25050, "KES"), True),
}


def _count(store, model=Event) -> int:
    with store.read() as session:
        return session.scalar(select(func.count()).select_from(model))


def _post(client, path, body, headers):
    return client.post(path, data=body, headers={"Content-Type": "application/json", **headers})


@pytest.fixture(params=list(CASES))
def case(request, store):
    provider, secret, signer, body, config, expected, signs_time = CASES[request.param]
    merchant, _ = merchant_with_endpoints(store, "http://127.0.0.1:9/hook")
    _, path = make_source(store, merchant, provider, secret, config=config)
    return path, signer, body, expected, signs_time, secret


def test_signed_callback_becomes_one_event(client, store, case):
    path, signer, body, (kind, status, amount, currency), _, _ = case
    response = _post(client, path, body, signer(body))
    assert response.status_code == 200, response.get_data()
    with store.read() as session:
        event = session.scalars(select(Event)).one()
        assert (event.type, event.status, event.amount_minor, event.currency) == (kind, status, amount, currency)
        assert event.raw_payload == body.decode()
        assert session.scalar(select(func.count()).select_from(Delivery)) == 1
    assert response.get_json()["id"] == event.id


def test_repeat_creates_no_second_event(client, store, case):
    path, signer, body, *_ = case
    first = _post(client, path, body, signer(body))
    second = _post(client, path, body, signer(body))
    assert first.status_code == second.status_code == 200
    assert first.get_json()["id"] == second.get_json()["id"]
    assert _count(store) == 1


def test_one_changed_byte_is_refused(client, store, case):
    path, signer, body, *_ = case
    if signer is flutterwave_legacy_headers:
        pytest.skip("verif-hash is the shared secret itself, not a signature of the body")
    headers = signer(body)
    tampered = body.replace(b"0", b"1", 1)
    assert tampered != body
    response = _post(client, path, tampered, headers)
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "bad_signature"
    assert _count(store) == 0


def test_wrong_secret_is_refused(client, store, case):
    path, signer, body, *_ = case
    wrong = "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA" if "standard" in path or signer is standard_headers else "wrong"
    response = _post(client, path, body, signer(body, wrong))
    assert response.status_code == 401
    assert _count(store) == 0


def test_missing_signature_is_refused(client, store, case):
    path, _, body, *_ = case
    response = _post(client, path, body, {})
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "missing_signature"
    assert _count(store) == 0


def test_ten_minute_old_timestamp_is_refused(client, store, case):
    path, signer, body, _, signs_time, _ = case
    if not signs_time:
        pytest.skip("this provider does not sign a time")
    response = _post(client, path, body, signer(body, timestamp=int(time.time()) - 600))
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "stale_timestamp"
    assert _count(store) == 0


def test_old_secret_verifies_during_rotation(client, store, case, webhook_app):
    from factories import api_key

    path, signer, body, _, _, secret = case
    source_id = path.split("/")[2]
    new = "whsec_TmV3U2VjcmV0TmV3U2VjcmV0TmV3U2Vj" if signer is standard_headers else "new-secret-for-rotation"
    rotated = client.post(f"/v1/sources/{source_id}/rotate-secret", json={"secret": new},
                          headers=api_key(store))
    assert rotated.status_code == 200, rotated.get_data()
    assert rotated.get_json()["previous_secret_expires_at"]
    assert "secret" not in rotated.get_json()
    assert _post(client, path, body, signer(body, secret)).status_code == 200
    assert _count(store) == 1


def test_unknown_source_or_token_is_404(client, store, case):
    path, signer, body, *_ = case
    wrong_token = path[:-1] + ("0" if path[-1] != "0" else "1")
    assert _post(client, wrong_token, body, signer(body)).status_code == 404
    assert _post(client, "/in/src_0123/" + "0" * 32, body, signer(body)).status_code == 404
    assert _count(store) == 0


def test_verified_body_that_does_not_parse_names_the_field(client, store):
    merchant, _ = merchant_with_endpoints(store)
    _, path = make_source(store, merchant, "stripe", STRIPE_SECRET)
    body = json.dumps({"id": "evt_1", "type": "payment_intent.succeeded",
                       "data": {"object": {"id": "pi_1", "amount": "12", "currency": "usd"}}}).encode()
    response = _post(client, path, body, stripe_headers(body))
    assert response.status_code == 400
    assert "data.object.amount_received" in response.get_json()["error"]["message"] or \
        "data.object.amount" in response.get_json()["error"]["message"]
    not_json = b"{not json"
    assert _post(client, path, not_json, stripe_headers(not_json)).status_code == 400
    assert _count(store) == 0


@pytest.mark.parametrize("fixture, kind, status, priority", [
    ("stripe/payment_intent_payment_failed.json", "stripe.payment_intent.payment_failed", "failed", Priority.URGENT),
    ("stripe/charge_dispute_created.json", "stripe.charge.dispute.created", "unknown", Priority.URGENT),
    ("stripe/charge_refunded.json", "stripe.charge.refunded", "succeeded", Priority.HIGH),
    ("stripe/customer_created.json", "stripe.customer.created", "unknown", Priority.NORMAL),
    ("stripe/payment_intent_succeeded_jpy.json", "stripe.payment_intent.succeeded", "succeeded", Priority.NORMAL),
])
def test_stripe_kinds_and_priorities(client, store, fixture, kind, status, priority):
    merchant, _ = merchant_with_endpoints(store, "http://127.0.0.1:9/hook")
    _, path = make_source(store, merchant, "stripe", STRIPE_SECRET)
    body = fixture_bytes(fixture)
    assert _post(client, path, body, stripe_headers(body)).status_code == 200
    with store.read() as session:
        event = session.scalars(select(Event)).one()
    assert (event.type, event.status, Priority(event.priority)) == (kind, status, priority)


@pytest.mark.parametrize("fixture, kind, status, priority", [
    ("paystack/transfer_success.json", "paystack.transfer.success", "succeeded", Priority.NORMAL),
    ("paystack/transfer_failed.json", "paystack.transfer.failed", "failed", Priority.URGENT),
    ("paystack/refund_processed.json", "paystack.refund.processed", "succeeded", Priority.HIGH),
])
def test_paystack_kinds_and_priorities(client, store, fixture, kind, status, priority):
    merchant, _ = merchant_with_endpoints(store, "http://127.0.0.1:9/hook")
    _, path = make_source(store, merchant, "paystack", PAYSTACK_SECRET)
    body = fixture_bytes(fixture)
    assert _post(client, path, body, paystack_headers(body)).status_code == 200
    with store.read() as session:
        event = session.scalars(select(Event)).one()
        emails = session.scalar(select(func.count()).select_from(Email))
    assert (event.type, event.status, Priority(event.priority)) == (kind, status, priority)
    assert emails == 0  # payouts and refunds send no payment notice


def test_payment_sends_notice_and_buyer_receipt(client, store):
    merchant, _ = merchant_with_endpoints(store, "http://127.0.0.1:9/hook")
    _, path = make_source(store, merchant, "stripe", STRIPE_SECRET)
    body = fixture_bytes("stripe/payment_intent_succeeded.json")
    assert _post(client, path, body, stripe_headers(body)).status_code == 200
    with store.read() as session:
        emails = {e.template: e.recipients for e in session.scalars(select(Email))}
    assert emails == {"payment_received": ["merchant@example.test"], "receipt": ["buyer@example.com"]}


def test_disabled_source_and_ip_allowlist(client, store, webhook_app):
    merchant, _ = merchant_with_endpoints(store)
    _, disabled = make_source(store, merchant, "paystack", PAYSTACK_SECRET, enabled=False)
    body = fixture_bytes("paystack/charge_success.json")
    assert _post(client, disabled, body, paystack_headers(body)).status_code == 404
    _, listed = make_source(store, merchant, "paystack", PAYSTACK_SECRET, ip_allowlist_enabled=True)
    response = _post(client, listed, body, paystack_headers(body))
    assert response.status_code == 403  # the test client is 127.0.0.1, not Paystack
    _, own = make_source(store, merchant, "paystack", PAYSTACK_SECRET, ip_allowlist_enabled=True,
                         config={"allowed_ips": ["127.0.0.0/8"]})
    assert _post(client, own, body, paystack_headers(body)).status_code == 200
    assert _count(store) == 1
