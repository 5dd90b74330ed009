"""The event catalog cannot drift from what is sent: every type, driven for real, validates against its schema.

Every M-Pesa fixture through its callback route, every gateway fixture through a
signed source, an ``api`` event, an operator's ``payhook.test`` and an endpoint
test, QueueTimeOuts resolved by Transaction Status answers, and each operational event (an endpoint
answering 410, one failing then recovering, an STK Push and a QueueTimeOut left unresolved) go through the real delivery-worker to real receivers; each body
received is validated (jsonschema, 2020-12, formats checked) against the catalog
entry for its type, and together they cover every entry of the catalog.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import threading

import jsonschema
from sqlalchemy import update

from factories import api_key, callback_url, fixture_bytes, make_source, merchant_with_endpoints
from payhook_shared import catalog, ids, operational, signing
from payhook_shared.callbacks import mpesa
from payhook_shared.store import Endpoint, PaymentIntent, StatusCheck
from payhook_shared.store.models import utcnow
from payhook_webhook import reconcile, resolve
from support import Receiver, wait_until
from support_gateways import (
    FLUTTERWAVE_SECRET, HMAC_CONFIG, HMAC_SECRET, PAYSTACK_SECRET, STANDARD_SECRET, STRIPE_SECRET,
    flutterwave_headers, flutterwave_legacy_headers, hmac_headers, paystack_headers, standard_headers,
    stripe_headers,
)

# Each M-Pesa fixture and the callback kind (the URL's last segment) it is posted to.
MPESA_FIXTURES = {
    "stk_success": "stk", "stk_cancelled_1032": "stk", "stk_string_codes": "stk",
    "c2b_validation": "c2b-validation", "c2b_confirmation_plain": "c2b-confirmation",
    "c2b_confirmation_masked": "c2b-confirmation", "c2b_confirmation_hashed": "c2b-confirmation",
    "b2c_result_success": "b2c-result", "b2c_result_failed": "b2c-result", "b2c_timeout": "b2c-timeout",
    "b2b_result_success": "b2b-result", "reversal_result_success": "reversal-result",
    "transaction_status_result": "status-result", "account_balance_result": "balance-result",
    "account_balance_timeout": "balance-timeout",
}
GENERIC = b'{"type": "shop.payment", "id": "pay_981", "data": {"status": "succeeded", "amount": "250.50", ' \
          b'"currency": "KES"}, "customer_email": "buyer@shop.example"}'
GATEWAYS = [
    ("stripe", STRIPE_SECRET, stripe_headers, {}, [f"stripe/{n}.json" for n in (
        "payment_intent_succeeded", "payment_intent_payment_failed", "payment_intent_succeeded_jpy",
        "charge_refunded", "charge_dispute_created", "customer_created")]),
    ("paystack", PAYSTACK_SECRET, paystack_headers, {}, [f"paystack/{n}.json" for n in (
        "charge_success", "refund_processed", "transfer_success", "transfer_failed")]),
    ("flutterwave", FLUTTERWAVE_SECRET, flutterwave_headers, {}, ["flutterwave/charge_completed.json"]),
    # The families' own examples: types Payhook passes through without interpreting.
    *((provider, secret, signer, {}, [json.dumps(catalog.entry_for(f"{provider}.x", provider).payload()).encode()])
      for provider, secret, signer in (("paystack", PAYSTACK_SECRET, paystack_headers),
                                       ("flutterwave", FLUTTERWAVE_SECRET, flutterwave_headers))),
    ("flutterwave", FLUTTERWAVE_SECRET, flutterwave_legacy_headers, {},
     ["flutterwave/charge_completed_failed.json"]),
    ("standard-webhooks", STANDARD_SECRET, standard_headers, {}, [GENERIC]),
    ("hmac", HMAC_SECRET, hmac_headers, {"hmac": HMAC_CONFIG}, [GENERIC]),
]


def resolved_and_unresolved(app, client, store, merchant) -> None:
    """Resolve the b2c_timeout fixture's QueueTimeOut and a B2B and a reversal one, as Transaction Status answers
    would (the checks marked asked, their answers posted to the status-result URL); leave one more unresolved."""
    timeout = json.loads(fixture_bytes("mpesa/b2c_timeout.json"))["Result"]
    for kind, originator in (("b2b", "b2b-1"), ("reversal", "rev-1"), ("b2c", "b2c-2")):
        body = {"Result": {**timeout, "OriginatorConversationID": originator, "ConversationID": f"AG_{originator}"}}
        assert client.post(callback_url(merchant, f"{kind}-timeout"), json=body).status_code == 200
    answer = json.loads(fixture_bytes("mpesa/transaction_status_result.json"))
    with store.write() as session:
        for originator in (timeout["OriginatorConversationID"], "b2b-1", "rev-1"):
            session.execute(update(StatusCheck).where(StatusCheck.originator_conversation_id == originator).values(
                query_originator_id=f"q-{originator}", query_conversation_id=f"AG_q-{originator}", queries=1,
                next_check_at=utcnow() + dt.timedelta(hours=1)))
    for originator in (timeout["OriginatorConversationID"], "b2b-1", "rev-1"):
        body = {"Result": {**answer["Result"], "OriginatorConversationID": f"q-{originator}",
                           "ConversationID": f"AG_q-{originator}"}}
        assert client.post(callback_url(merchant, "status-result"), json=body).status_code == 200
    checks = resolve.StatusChecks(app, reconcile.policy_of(app.extensions["payhook.settings"]))
    assert checks.tick() == 3, "the answers woke their checks"
    with store.write() as session:  # as if RECONCILE_MAX_AGE had passed for the last
        session.execute(update(StatusCheck).where(StatusCheck.originator_conversation_id == "b2c-2")
                        .values(next_check_at=utcnow()))
    checks.policy = dataclasses.replace(checks.policy, max_age=0)
    assert checks.tick() == 1


def add_endpoint(store, merchant_id: str, url: str, event_types: list[str]) -> None:
    with store.write() as session:
        session.add(Endpoint(id=ids.new_id("ep"), merchant_id=merchant_id, url=url, event_types=event_types,
                             secret=signing.generate_secret()))


def validate(body: dict) -> catalog.EventType:
    """Validate one received webhook body against its catalog entry; the entry."""
    entry = catalog.entry_for(body["type"], body["data"]["provider"])
    jsonschema.Draft202012Validator(entry.body_schema(), format_checker=jsonschema.FormatChecker()).validate(body)
    return entry


def test_every_type_sent_validates_against_the_catalog(webhook_app, client, store, receiver, delivery_worker):
    gone, flaky = Receiver().start(), Receiver().start()
    gone.respond = lambda req: (410, {}, b"gone")
    up = threading.Event()
    flaky.respond = lambda req: (200, {}, b"ok") if up.is_set() else (503, {}, b"down")
    try:
        merchant, [main] = merchant_with_endpoints(store, receiver.url)
        # A watcher on the same receiver takes the opt-in types; two more endpoints trip the operational events.
        opt_in = [e.example_type for e in catalog.ENTRIES if e.opt_in]
        add_endpoint(store, merchant.id, receiver.url + "/opt-in", opt_in)
        add_endpoint(store, merchant.id, gone.url, [mpesa.STK_PUSH])
        add_endpoint(store, merchant.id, flaky.url, [mpesa.B2B])
        delivery_worker(retry_schedule=(0.2,) * 50, retry_jitter=0.0, circuit_threshold=1, circuit_cooldown=0.3)

        for name, kind in MPESA_FIXTURES.items():
            response = client.post(callback_url(merchant, kind), data=fixture_bytes(f"mpesa/{name}.json"),
                                   content_type="application/json")
            assert response.status_code == 200, (name, response.get_json())
        for provider, secret, signer, config, bodies in GATEWAYS:
            _, path = make_source(store, merchant, provider, secret, config=config)
            for body in bodies:
                raw = body if isinstance(body, bytes) else fixture_bytes(body)
                response = client.post(path, data=raw, headers={"Content-Type": "application/json",
                                                                **signer(raw, secret)})
                assert response.status_code == 200, (provider, body, response.get_json())
        key = api_key(store, merchant.id)
        assert client.post("/v1/events", headers=key, json={
            "type": "order.paid", "idempotency_key": "o-1", "data": {"amount": "10.50", "currency": "KES",
                                                                      "status": "succeeded"}}).status_code == 201
        assert client.post(f"/test/priority/{merchant.id}/normal", headers=api_key(store),
                           json={"count": 1}).status_code == 200
        tested = client.post(f"/v1/endpoints/{main.id}/test", headers=key, json={"type": "paystack.transfer.failed"})
        assert tested.get_json()["delivered"] is True
        # A registered STK Push the reconciler cannot settle (no Daraja credentials), at once past its age limit.
        assert client.post("/v1/mpesa/intents", headers=key, json={
            "checkout_request_id": "ws_CO_031220261200001", "amount": 100,
            "account_reference": "INV-7"}).status_code == 201
        with store.write() as session:  # as if RECONCILE_AFTER had passed
            session.execute(update(PaymentIntent).values(next_check_at=utcnow()))
        policy = dataclasses.replace(reconcile.policy_of(webhook_app.extensions["payhook.settings"]), max_age=0)
        assert reconcile.Reconciler(webhook_app, 1.0, policy).tick() == 1
        resolved_and_unresolved(webhook_app, client, store, merchant)

        wait_until(lambda: any(r.json()["type"] == operational.ENDPOINT_FAILING for r in receiver.received),
                   what="failing webhook")
        up.set()
        wanted = {operational.ENDPOINT_DISABLED, operational.DELIVERY_DEAD, operational.ENDPOINT_RECOVERED,
                  operational.PAYMENT_UNRESOLVED, operational.TRANSACTION_UNRESOLVED}
        wait_until(lambda: wanted <= {r.json()["type"] for r in receiver.received}, timeout=20,
                   what="every operational webhook")
        # Every callback and event at the main endpoint but the opt-in C2B validation, and the three posted here;
        # then the QueueTimeOuts, the status results answering three of them and the three resolutions.
        expected = len(MPESA_FIXTURES) - 1 + sum(len(b) for *_, b in GATEWAYS) + 3 + 3 + 3 + 3
        wait_until(lambda: len([r for r in receiver.received if r.path == "/webhooks"]) == expected,
                   what="every event at the main endpoint")

        covered = {(entry.type, entry.provider) for entry in (validate(r.json()) for r in receiver.received)}
        missing = {(e.type, e.provider) for e in catalog.ENTRIES} - covered
        assert missing == set()
        assert any(r.json()["test"] for r in receiver.received)
    finally:
        gone.stop()
        flaky.stop()
