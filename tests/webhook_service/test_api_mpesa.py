"""Daraja through Payhook: credentials (write-only, encrypted), STK Push, registered intents, and the STK
callback settling an intent. Daraja is tests/support_daraja.py's real HTTP server."""

from __future__ import annotations

import copy
import json
import logging
import threading

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import select

from factories import api_key, fixture_json, merchant_with_endpoints, stk_url
from payhook_shared.daraja import client as daraja_client
from payhook_shared.store import AuditEntry, DarajaCredential, Event, PaymentIntent
from support_daraja import CONSUMER_KEY, CONSUMER_SECRET, PASSKEY, SHORTCODE, FakeDaraja

SECURITY_CREDENTIAL = "Safaricom999!*!-encrypted-initiator-password-b64"
INITIATOR = "testapi-initiator"
SECRETS = (CONSUMER_KEY, CONSUMER_SECRET, PASSKEY, SECURITY_CREDENTIAL, INITIATOR)
CREDENTIALS = {"environment": "sandbox", "shortcode": SHORTCODE, "consumer_key": CONSUMER_KEY,
               "consumer_secret": CONSUMER_SECRET, "passkey": PASSKEY, "initiator_name": INITIATOR,
               "security_credential": SECURITY_CREDENTIAL}
PUBLIC = "https://payhook.example.com"
KEY = Fernet.generate_key().decode()


@pytest.fixture
def daraja():
    server = FakeDaraja().start()
    yield server
    server.stop()


@pytest.fixture
def app(database_url, redis_url, daraja):
    from payhook_webhook.app import create_app

    app = create_app({"database_url": database_url, "redis_url": redis_url, "log_format": "text",
                      "log_level": "DEBUG", "public_base_url": PUBLIC, "daraja_sandbox_url": daraja.url,
                      "credentials_keys": (KEY,), "credentials_key_file": ""})
    app.config["TESTING"] = True
    yield app
    app.extensions["payhook.store"].dispose()


@pytest.fixture
def http(app):
    return app.test_client()


@pytest.fixture
def shop(app):
    store = app.extensions["payhook.store"]
    merchant, _ = merchant_with_endpoints(store, "http://127.0.0.1:9/a")
    return merchant, api_key(store, merchant.id)


def put_credentials(http, merchant, headers, body=CREDENTIALS):
    return http.put(f"/v1/merchants/{merchant.id}/daraja-credentials", json=body, headers=headers)


def push(http, headers, **changes):
    body = {"amount": 10, "phone": "0708374149", "account_reference": "INV-1", "description": "Order 1",
            "idempotency_key": "order-1", **changes}
    return http.post("/v1/mpesa/stk-push", json=body, headers=headers)


def stk_callback(checkout_request_id: str, fixture: str = "mpesa/stk_success.json") -> bytes:
    body = copy.deepcopy(fixture_json(fixture))
    body["Body"]["stkCallback"]["CheckoutRequestID"] = checkout_request_id
    return json.dumps(body).encode()


def intents(app) -> list[PaymentIntent]:
    with app.extensions["payhook.store"].read() as session:
        return session.scalars(select(PaymentIntent).order_by(PaymentIntent.id)).all()


# -- credentials ------------------------------------------------------------------------------------------------

def test_credentials_are_write_only_and_ciphertext_in_the_store(app, http, shop):
    merchant, headers = shop
    answer = put_credentials(http, merchant, headers)
    assert answer.status_code == 200
    shown = http.get(f"/v1/merchants/{merchant.id}/daraja-credentials", headers=headers)
    for response in (answer, shown):
        text = response.get_data(as_text=True)
        assert not any(secret in text for secret in SECRETS)
        assert response.get_json()["set"] == {"consumer_key": True, "consumer_secret": True, "passkey": True,
                                              "initiator_name": True, "security_credential": True}
        assert response.get_json()["shortcode"] == SHORTCODE
    with app.extensions["payhook.store"].read() as session:
        row = session.scalars(select(DarajaCredential)).one()
        audit = session.scalars(select(AuditEntry).where(AuditEntry.action == "set_daraja_credentials")).one()
    stored = " ".join(str(getattr(row, c.name)) for c in DarajaCredential.__table__.columns)
    assert not any(secret in stored for secret in SECRETS)
    assert Fernet(KEY.encode()).decrypt(row.consumer_secret_enc.encode()).decode() == CONSUMER_SECRET
    assert not any(secret in json.dumps(audit.details) for secret in SECRETS)


def test_a_field_left_out_keeps_its_stored_value(app, http, shop):
    merchant, headers = shop
    put_credentials(http, merchant, headers)
    answer = put_credentials(http, merchant, headers, {"environment": "production", "shortcode": "600999",
                                                       "passkey": "new-passkey"})
    assert answer.status_code == 200 and answer.get_json()["environment"] == "production"
    with app.extensions["payhook.store"].read() as session:
        row = session.scalars(select(DarajaCredential)).one()
    fernet = Fernet(KEY.encode())
    assert fernet.decrypt(row.consumer_key_enc.encode()).decode() == CONSUMER_KEY
    assert fernet.decrypt(row.passkey_enc.encode()).decode() == "new-passkey" and row.version == 2


@pytest.mark.parametrize("body, field", [
    ({"environment": "sandbox", "shortcode": SHORTCODE, "consumer_secret": "s"}, "consumer_key"),
    ({**CREDENTIALS, "environment": "staging"}, "environment"),
    ({**CREDENTIALS, "shortcode": "17437a"}, "shortcode"),
    ({**CREDENTIALS, "passkey": "has space"}, "passkey"),
    ({key: value for key, value in CREDENTIALS.items() if key != "shortcode"}, "shortcode"),
])
def test_refused_credentials_name_the_field(http, shop, body, field):
    merchant, headers = shop
    answer = put_credentials(http, merchant, headers, body)
    assert answer.status_code == 400
    assert field in answer.get_json()["error"]["fields"]
    assert not any(secret in answer.get_data(as_text=True) for secret in SECRETS)


def test_another_merchants_credentials_are_not_found(app, http, shop):
    merchant, headers = shop
    other, _ = merchant_with_endpoints(app.extensions["payhook.store"])
    assert put_credentials(http, other, headers).status_code == 404
    assert http.get(f"/v1/merchants/{other.id}/daraja-credentials", headers=headers).status_code == 404


def test_credentials_can_be_removed(http, shop):
    merchant, headers = shop
    put_credentials(http, merchant, headers)
    url = f"/v1/merchants/{merchant.id}/daraja-credentials"
    assert http.delete(url, headers=headers).status_code == 204
    assert http.get(url, headers=headers).get_json() == {"configured": False}
    assert http.delete(url, headers=headers).status_code == 404


# -- STK Push ---------------------------------------------------------------------------------------------------

def test_stk_push_calls_daraja_with_the_merchants_callback_url_and_records_a_pending_intent(app, http, shop, daraja):
    merchant, headers = shop
    put_credentials(http, merchant, headers)
    answer = push(http, headers)
    assert answer.status_code == 201
    body = answer.get_json()
    sent = [b for path, _, b in daraja.requests if path == daraja_client.STK_PUSH_PATH][0]
    assert sent["CallBackURL"] == f"{PUBLIC}{stk_url(merchant)}"
    assert sent["PhoneNumber"] == "254708374149" and sent["Amount"] == 10
    assert body["checkout_request_id"].startswith("ws_CO_") and body["merchant_request_id"]
    assert (body["state"], body["source"], body["amount"], body["phone"]) == ("pending", "api", "10.00",
                                                                               "254708***149")
    (intent,) = intents(app)
    assert (intent.checkout_request_id, intent.amount_minor, intent.phone) == (body["checkout_request_id"], 1000,
                                                                               "254708***149")


def test_the_same_idempotency_key_gives_the_same_answer_without_calling_daraja_again(http, shop, daraja):
    merchant, headers = shop
    put_credentials(http, merchant, headers)
    first = push(http, headers)
    again = push(http, headers, amount=99)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.get_json() == first.get_json()
    assert daraja.count(daraja_client.STK_PUSH_PATH) == 1
    assert push(http, headers, idempotency_key="order-2").status_code == 201
    assert daraja.count(daraja_client.STK_PUSH_PATH) == 2


def test_concurrent_pushes_with_one_key_make_one_daraja_call(app, http, shop, daraja):
    merchant, headers = shop
    put_credentials(http, merchant, headers)
    daraja.delay[daraja_client.STK_PUSH_PATH] = 0.3  # the second request arrives while the first is at Daraja
    answers = []
    threads = [threading.Thread(target=lambda: answers.append(push(app.test_client(), headers))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(a.status_code for a in answers) == [200, 200, 201]
    assert len({a.get_json()["id"] for a in answers}) == 1
    assert daraja.count(daraja_client.STK_PUSH_PATH) == 1


@pytest.mark.parametrize("changes, field", [
    ({"phone": "254812345678"}, "phone"), ({"phone": "12345"}, "phone"), ({"phone": True}, "phone"),
    ({"amount": 0}, "amount"), ({"amount": "10.50"}, "amount"), ({"amount": -5}, "amount"),
    ({"amount": 250_001}, "amount"), ({"amount": "ten"}, "amount"),
    ({"account_reference": "A-REFERENCE-TOO-LONG"}, "account_reference"), ({"description": ""}, "description"),
    ({"idempotency_key": None}, "idempotency_key"),
])
def test_refused_pushes_name_the_field_and_never_reach_daraja(http, shop, daraja, changes, field):
    merchant, headers = shop
    put_credentials(http, merchant, headers)
    answer = push(http, headers, **changes)
    assert answer.status_code == 400 and field in answer.get_json()["error"]["fields"]
    assert daraja.count(daraja_client.STK_PUSH_PATH) == 0


@pytest.mark.parametrize("phone", ["254708374149", "+254 708 374 149", "0708374149", "0110374149"])
def test_phones_are_normalised_for_daraja(http, shop, daraja, phone):
    merchant, headers = shop
    put_credentials(http, merchant, headers)
    assert push(http, headers, phone=phone, amount="25").status_code == 201
    sent = [b for path, _, b in daraja.requests if path == daraja_client.STK_PUSH_PATH][0]
    assert sent["PhoneNumber"] == "254" + phone.replace(" ", "")[-9:] and sent["Amount"] == 25


def test_a_push_without_credentials_is_refused(http, shop):
    _, headers = shop
    answer = push(http, headers)
    assert answer.status_code == 400 and "no Daraja credentials" in answer.get_json()["error"]["message"]


def test_daraja_refusals_are_422_with_darajas_ids_and_record_nothing(app, http, shop, daraja):
    merchant, headers = shop
    put_credentials(http, merchant, headers)
    daraja.scripted[daraja_client.STK_PUSH_PATH].append(
        (400, {"requestId": "r-77", "errorCode": "400.002.02", "errorMessage": "Bad Request - Invalid PartyB"}))
    answer = push(http, headers)
    assert answer.status_code == 422
    assert answer.get_json()["error"]["fields"] == {"daraja_error_code": "400.002.02", "daraja_request_id": "r-77"}
    assert intents(app) == []


def test_wrong_consumer_secret_is_422_and_daraja_down_is_502(http, shop, daraja):
    merchant, headers = shop
    put_credentials(http, merchant, headers, {**CREDENTIALS, "consumer_secret": "wrong-secret"})
    assert push(http, headers).get_json()["error"]["code"] == "daraja_credentials_refused"
    put_credentials(http, merchant, headers)
    daraja.scripted[daraja_client.STK_PUSH_PATH].append((503, {"errorMessage": "Service unavailable"}))
    answer = push(http, headers, idempotency_key="order-2")
    assert answer.status_code == 502 and answer.get_json()["error"]["code"] == "daraja_unavailable"


def test_an_admin_key_names_the_merchant(app, http, shop):
    merchant, headers = shop
    put_credentials(http, merchant, headers)
    admin = api_key(app.extensions["payhook.store"])
    assert push(http, admin).get_json()["error"]["fields"] == {"merchant_id": ["is required with an admin API key"]}
    assert push(http, admin, merchant_id=merchant.id).status_code == 201


# -- registered intents and listing -----------------------------------------------------------------------------

def test_a_registered_intent_is_recorded_once(app, http, shop):
    merchant, headers = shop
    body = {"checkout_request_id": "ws_CO_own_1", "amount": 5, "phone": "254708374149"}
    first = http.post("/v1/mpesa/intents", json=body, headers=headers)
    again = http.post("/v1/mpesa/intents", json=body, headers=headers)
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.get_json()["id"] == again.get_json()["id"] and first.get_json()["source"] == "registered"
    other, _ = merchant_with_endpoints(app.extensions["payhook.store"])
    stolen = http.post("/v1/mpesa/intents", json=body, headers=api_key(app.extensions["payhook.store"], other.id))
    assert stolen.status_code == 400 and "checkout_request_id" in stolen.get_json()["error"]["fields"]
    missing = http.post("/v1/mpesa/intents", json={"amount": 5}, headers=headers)
    assert missing.status_code == 400 and "checkout_request_id" in missing.get_json()["error"]["fields"]


def test_intents_are_listed_filtered_and_only_the_merchants_own(app, http, shop):
    merchant, headers = shop
    put_credentials(http, merchant, headers)
    pushed = push(http, headers).get_json()
    http.post("/v1/mpesa/intents", json={"checkout_request_id": "ws_CO_own_2"}, headers=headers)
    other, _ = merchant_with_endpoints(app.extensions["payhook.store"])
    other_headers = api_key(app.extensions["payhook.store"], other.id)
    http.post("/v1/mpesa/intents", json={"checkout_request_id": "ws_CO_other"}, headers=other_headers)

    listed = http.get("/v1/mpesa/intents", headers=headers).get_json()
    assert [i["checkout_request_id"] for i in listed["data"]] == [pushed["checkout_request_id"], "ws_CO_own_2"]
    only_api = http.get("/v1/mpesa/intents?source=api", headers=headers).get_json()["data"]
    assert [i["id"] for i in only_api] == [pushed["id"]]
    assert http.get("/v1/mpesa/intents?state=completed", headers=headers).get_json()["data"] == []
    assert http.get(f"/v1/mpesa/intents?merchant_id={other.id}", headers=headers).status_code == 404
    assert http.get("/v1/mpesa/intents?state=paid", headers=headers).status_code == 400
    assert http.get(f"/v1/mpesa/intents/{pushed['id']}", headers=other_headers).status_code == 404
    page = http.get("/v1/mpesa/intents?limit=1", headers=headers).get_json()
    assert page["has_more"] and len(page["data"]) == 1


# -- the STK callback settles the intent --------------------------------------------------------------------------

@pytest.mark.parametrize("fixture, state, code", [("mpesa/stk_success.json", "completed", "0"),
                                                  ("mpesa/stk_cancelled_1032.json", "failed", "1032")])
def test_the_stk_callback_settles_the_intent(app, http, shop, fixture, state, code):
    merchant, headers = shop
    put_credentials(http, merchant, headers)
    pushed = push(http, headers).get_json()
    answer = http.post(stk_url(merchant), data=stk_callback(pushed["checkout_request_id"], fixture),
                       content_type="application/json")
    assert answer.status_code == 200
    (intent,) = intents(app)
    with app.extensions["payhook.store"].read() as session:
        event = session.scalars(select(Event)).one()
    assert (intent.state, intent.result_code, intent.event_id) == (state, code, event.id)
    assert intent.resolved_at is not None
    # A duplicate callback changes nothing.
    http.post(stk_url(merchant), data=stk_callback(pushed["checkout_request_id"], fixture),
              content_type="application/json")
    assert intents(app)[0].event_id == event.id


def test_a_callback_for_another_checkout_leaves_intents_pending(app, http, shop):
    merchant, headers = shop
    http.post("/v1/mpesa/intents", json={"checkout_request_id": "ws_CO_mine"}, headers=headers)
    http.post(stk_url(merchant), data=stk_callback("ws_CO_someone_else"), content_type="application/json")
    assert intents(app)[0].state == "pending"


def test_an_intent_registered_after_its_callback_is_settled_at_once(app, http, shop):
    merchant, headers = shop
    http.post(stk_url(merchant), data=stk_callback("ws_CO_fast"), content_type="application/json")
    answer = http.post("/v1/mpesa/intents", json={"checkout_request_id": "ws_CO_fast"}, headers=headers)
    assert answer.status_code == 201 and answer.get_json()["state"] == "completed"


# -- nothing secret in the logs -----------------------------------------------------------------------------------

def test_no_credential_or_full_phone_reaches_the_logs(http, shop, caplog):
    merchant, headers = shop
    caplog.set_level(logging.DEBUG)
    put_credentials(http, merchant, headers)
    pushed = push(http, headers).get_json()
    push(http, headers)
    http.post(stk_url(merchant), data=stk_callback(pushed["checkout_request_id"]), content_type="application/json")
    put_credentials(http, merchant, headers, {**CREDENTIALS, "consumer_secret": "wrong-secret"})
    push(http, headers, idempotency_key="order-3")
    assert "daraja stk_push ok" in caplog.text  # the run was logged, at DEBUG
    for secret in (*SECRETS, "wrong-secret", "254708374149", "0708374149"):
        assert secret not in caplog.text
