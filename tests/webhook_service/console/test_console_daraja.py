"""The console's Daraja credentials form (write-only) and payment intents list."""

from __future__ import annotations

import logging

from cryptography.fernet import Fernet
from sqlalchemy import select

from factories import merchant_with_endpoints
from payhook_shared import ids
from payhook_shared.store import DarajaCredential, PaymentIntent
from payhook_webhook.auth import create_api_key
from support import console_sign_in, csrf_token
from support_daraja import CONSUMER_KEY, CONSUMER_SECRET, PASSKEY, SHORTCODE

KEY = Fernet.generate_key().decode()
FORM = {"environment": "sandbox", "shortcode": SHORTCODE, "consumer_key": CONSUMER_KEY,
        "consumer_secret": CONSUMER_SECRET, "passkey": PASSKEY, "initiator_name": "",
        "security_credential": ""}
SECRETS = (CONSUMER_KEY, CONSUMER_SECRET, PASSKEY)


def signed_in(console_app_with, merchant_key: bool = True):
    app = console_app_with(credentials_keys=(KEY,), credentials_key_file="")
    store = app.extensions["payhook.store"]
    merchant, _ = merchant_with_endpoints(store, "http://127.0.0.1:9/a")
    _, key = create_api_key(store, merchant.id if merchant_key else None, "console")
    client = app.test_client()
    console_sign_in(client, key)
    return app, store, merchant, client


def test_credentials_are_set_in_the_console_and_never_shown_back(console_app_with, caplog):
    caplog.set_level(logging.DEBUG)
    app, store, merchant, client = signed_in(console_app_with)
    page = client.get("/console/daraja").get_data(as_text=True)
    assert "No Daraja credentials yet." in page
    saved = client.post("/console/daraja", data={**FORM, "merchant": merchant.id, "csrf_token": csrf_token(page)})
    assert saved.status_code == 302
    shown = client.get(saved.headers["Location"]).get_data(as_text=True)
    assert "saved" in shown and SHORTCODE in shown and "set: leave empty to keep" in shown
    assert not any(secret in shown for secret in SECRETS)
    with store.read() as session:
        row = session.scalars(select(DarajaCredential)).one()
    assert Fernet(KEY.encode()).decrypt(row.passkey_enc.encode()).decode() == PASSKEY
    assert row.initiator_name_enc is None

    # Empty secret fields keep the stored values.
    again = client.post("/console/daraja", data={**FORM, "consumer_key": "", "consumer_secret": "", "passkey": "",
                                                 "shortcode": "600999", "merchant": merchant.id,
                                                 "csrf_token": csrf_token(shown)})
    assert again.status_code == 302
    with store.read() as session:
        row = session.scalars(select(DarajaCredential)).one()
    assert row.shortcode == "600999"
    assert Fernet(KEY.encode()).decrypt(row.consumer_secret_enc.encode()).decode() == CONSUMER_SECRET
    assert not any(secret in caplog.text for secret in SECRETS)


def test_a_refused_form_names_the_field_and_echoes_no_secret(console_app_with):
    app, store, merchant, client = signed_in(console_app_with)
    page = client.get("/console/daraja").get_data(as_text=True)
    refused = client.post("/console/daraja", data={**FORM, "shortcode": "12", "merchant": merchant.id,
                                                   "csrf_token": csrf_token(page)})
    text = refused.get_data(as_text=True)
    assert refused.status_code == 400 and "shortcode: must be 5 to 7 digits" in text
    assert not any(secret in text for secret in SECRETS)
    first = client.post("/console/daraja", data={**FORM, "consumer_key": "", "merchant": merchant.id,
                                                 "csrf_token": csrf_token(page)})
    assert first.status_code == 400 and "consumer_key: is required the first time" in first.get_data(as_text=True)


def test_a_merchant_key_naming_another_merchant_sets_only_its_own(console_app_with):
    app, store, merchant, client = signed_in(console_app_with)
    other, _ = merchant_with_endpoints(store, "http://127.0.0.1:9/b")
    page = client.get("/console/daraja").get_data(as_text=True)
    client.post("/console/daraja", data={**FORM, "merchant": other.id, "csrf_token": csrf_token(page)})
    with store.read() as session:
        owners = session.scalars(select(DarajaCredential.merchant_id)).all()
    assert owners == [merchant.id]


def add_intent(store, merchant, checkout: str, state: str = "pending", source: str = "api"):
    with store.write() as session:
        session.add(PaymentIntent(id=ids.new_id("pin"), merchant_id=merchant.id, checkout_request_id=checkout,
                                  amount_minor=1000, currency="KES", phone="254708***149", account_reference="INV-1",
                                  state=state, source=source, checks=0))


def test_intents_are_listed_and_filtered_for_the_merchant_only(console_app_with):
    app, store, merchant, client = signed_in(console_app_with)
    other, _ = merchant_with_endpoints(store, "http://127.0.0.1:9/b")
    add_intent(store, merchant, "ws_CO_pending")
    add_intent(store, merchant, "ws_CO_done", state="completed", source="registered")
    add_intent(store, other, "ws_CO_theirs")
    page = client.get("/console/intents").get_data(as_text=True)
    assert "ws_CO_pending" in page and "ws_CO_done" in page and "ws_CO_theirs" not in page
    assert "KES 10.00" in page and "254708***149" in page
    completed = client.get("/console/intents?state=completed").get_data(as_text=True)
    assert "ws_CO_done" in completed and "ws_CO_pending" not in completed
    registered = client.get("/console/intents?source=api&checkout=ws_CO_pending").get_data(as_text=True)
    assert "ws_CO_pending" in registered and "ws_CO_done" not in registered
    assert client.get("/console/intents?state=paid").status_code == 400
    assert "ws_CO_theirs" not in client.get(f"/console/intents?merchant={other.id}").get_data(as_text=True)


def test_an_operator_sees_every_merchants_intents(console_app_with):
    app, store, merchant, client = signed_in(console_app_with, merchant_key=False)
    other, _ = merchant_with_endpoints(store, "http://127.0.0.1:9/b")
    add_intent(store, merchant, "ws_CO_a")
    add_intent(store, other, "ws_CO_b")
    page = client.get("/console/intents").get_data(as_text=True)
    assert "ws_CO_a" in page and "ws_CO_b" in page
    only = client.get(f"/console/intents?merchant={other.id}").get_data(as_text=True)
    assert "ws_CO_b" in only and "ws_CO_a" not in only
