"""Amounts follow one grammar on every route that reads one; no spelling of an amount answers 5xx.

Where the amount only informs (STK results, C2B validations, Result API callbacks) an unreadable one is
recorded as absent and noted in ``details``; where it is the payment (C2B confirmations, gateway
payments, generic sources, ``/v1/events``) the callback is refused with a 400 naming the field.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from factories import api_key, callback_url, fixture_json, make_source, merchant_with_endpoints
from payhook_shared.store import Event, Store
from support_gateways import (
    FLUTTERWAVE_SECRET, HMAC_CONFIG, HMAC_SECRET, PAYSTACK_SECRET, STRIPE_SECRET, flutterwave_headers,
    hmac_headers, paystack_headers, stripe_headers,
)

# Strings outside the grammar (the first two overflowed or underflowed Decimal), and JSON numbers out of range.
BAD_AMOUNTS = ["1e999999", "1e-999999999", "1,0,0", "1_000", "\u0661\u0660\u0660", "\uff11\uff10\uff10", 1e308,
               10**30]


def _stk(amount):
    body = fixture_json("mpesa/stk_success.json")
    body["Body"]["stkCallback"]["CallbackMetadata"]["Item"][0]["Value"] = amount
    return body


def _c2b(amount):
    return fixture_json("mpesa/c2b_confirmation_plain.json") | {"TransAmount": amount}


def _b2c(amount):
    body = fixture_json("mpesa/b2c_result_success.json")
    body["Result"]["ResultParameters"]["ResultParameter"][0]["Value"] = amount
    return body


def _stripe(amount):
    body = fixture_json("stripe/payment_intent_succeeded.json")
    body["data"]["object"]["amount"] = body["data"]["object"]["amount_received"] = amount
    return body


def _with_data_amount(fixture):
    def build(amount):
        body = fixture_json(fixture)
        body["data"]["amount"] = amount
        return body
    return build


def _generic(amount):
    return {"type": "shop.payment", "id": "pay_1", "data": {"status": "succeeded", "amount": amount,
                                                            "currency": "KES"}}


def _api(amount):
    return {"type": "shop.payment", "idempotency_key": "order-1",
            "data": {"status": "succeeded", "amount": amount, "currency": "KES"}}


def _status(amount):
    body = fixture_json("mpesa/transaction_status_result.json")
    for item in body["Result"]["ResultParameters"]["ResultParameter"]:
        if item["Key"] == "Amount":
            item["Value"] = amount
    return body


# route: (kind: M-Pesa callback kind, "api", or a source's (provider, secret, signer, config)), body, field,
# and whether the amount is required (400) or informational (recorded without it).
ROUTES = {
    "stk": ("stk", _stk, "Amount", False),
    "c2b-validation": ("c2b-validation", _c2b, "TransAmount", False),
    "c2b-confirmation": ("c2b-confirmation", _c2b, "TransAmount", True),
    "b2c-result": ("b2c-result", _b2c, "TransactionAmount", False),
    "status-result": ("status-result", _status, "Amount", False),
    "api-events": ("api", _api, "data.amount", True),
    "stripe": (("stripe", STRIPE_SECRET, stripe_headers, {}), _stripe, "data.object.amount_received", True),
    "paystack": (("paystack", PAYSTACK_SECRET, paystack_headers, {}), _with_data_amount("paystack/charge_success.json"),
                 "data.amount", True),
    "flutterwave": (("flutterwave", FLUTTERWAVE_SECRET, flutterwave_headers, {}),
                    _with_data_amount("flutterwave/charge_completed.json"), "data.amount", True),
    "hmac": (("hmac", HMAC_SECRET, hmac_headers, {"hmac": HMAC_CONFIG}), _generic, "data.amount", True),
}


class Poster:
    """Posts a body to one route of one merchant, signing or authenticating as the route needs."""

    def __init__(self, client, store, merchant):
        self.client, self.store, self.merchant = client, store, merchant
        self._sources: dict[str, tuple[str, object]] = {}
        self._key: dict[str, str] | None = None

    def post(self, route: str, amount):
        kind, build, _, _ = ROUTES[route]
        body = json.dumps(build(amount)).encode()
        if kind == "api":
            if self._key is None:
                self._key = api_key(self.store, self.merchant.id)
            return self.client.post("/v1/events", data=body, content_type="application/json", headers=self._key)
        if isinstance(kind, tuple):
            provider, secret, signer, config = kind
            if provider not in self._sources:
                _, path = make_source(self.store, self.merchant, provider, secret, config=config)
                self._sources[provider] = (path, signer)
            path, signer = self._sources[provider]
            return self.client.post(path, data=body, headers={"Content-Type": "application/json", **signer(body)})
        return self.client.post(callback_url(self.merchant, kind), data=body, content_type="application/json")


@pytest.mark.parametrize("amount", BAD_AMOUNTS, ids=repr)
@pytest.mark.parametrize("route", list(ROUTES))
def test_an_unreadable_amount_is_noted_or_refused_naming_the_field(client, store, route, amount):
    merchant, _ = merchant_with_endpoints(store, "http://127.0.0.1:9/hook")
    _, _, field, required = ROUTES[route]
    response = Poster(client, store, merchant).post(route, amount)
    with store.read() as session:
        events = list(session.scalars(select(Event)))
    if required:
        assert response.status_code == 400, response.get_data()
        assert response.get_json()["error"]["message"].startswith(f"{field}: ")
        assert events == []
    else:
        assert response.status_code == 200, response.get_data()
        [event] = events
        assert event.amount_minor is None
        assert event.details["amount_error"].startswith(f"{field}: ")


@pytest.mark.parametrize("route, amount, minor", [
    ("stk", "5.00", 500), ("stk", 1.0, 100), ("c2b-confirmation", "10", 1000), ("c2b-confirmation", 1500.5, 150050),
    ("b2c-result", 10, 1000), ("api-events", "250.50", 25050), ("api-events", "5.000", 500),
    ("flutterwave", "19.99", 1999), ("hmac", 0, 0),
])
def test_amounts_in_the_grammar_are_read_exactly(client, store, route, amount, minor):
    merchant, _ = merchant_with_endpoints(store, "http://127.0.0.1:9/hook")
    response = Poster(client, store, merchant).post(route, amount)
    assert response.status_code in (200, 201), response.get_data()
    with store.read() as session:
        event = session.scalars(select(Event)).one()
    assert event.amount_minor == minor and "amount_error" not in event.details


@pytest.fixture(scope="module")
def module_poster(tmp_path_factory, sqlite_template, redis_server):
    from payhook_webhook.app import create_app

    path = Path(tmp_path_factory.mktemp("amounts")) / "payhook.db"
    shutil.copy(sqlite_template, path)
    url = f"sqlite:///{path}"
    app = create_app({"database_url": url, "redis_url": redis_server.url, "log_level": "ERROR"})
    store = app.extensions["payhook.store"]
    merchant, _ = merchant_with_endpoints(store, "http://127.0.0.1:9/hook")
    yield Poster(app.test_client(), store, merchant)
    store.dispose()


# Any text, plus numbers in the spellings Decimal reads and the grammar does not (exponents, signs, separators).
amounts = st.one_of(
    st.text(max_size=60),
    st.text(alphabet="0123456789.,_ +-eE\u0661\uff11\u00a0", max_size=20),
    st.builds("{}{}e{}".format, st.sampled_from(["", "-", "+"]), st.integers(0, 10**6), st.integers(-10**10, 10**10)),
)


@pytest.mark.slow
@settings(max_examples=600, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(route=st.sampled_from(list(ROUTES)), amount=amounts)
def test_no_unicode_string_as_an_amount_answers_5xx(module_poster, route, amount):
    response = module_poster.post(route, amount)
    assert response.status_code < 500, (route, amount, response.get_data()[:300])
    _, _, field, required = ROUTES[route]
    if "\x00" in amount:  # JSON holding NUL is refused whole, before any field is read
        return
    if required and response.status_code == 400:
        assert field in response.get_json()["error"]["message"]
    if not required:
        assert response.status_code == 200, (route, amount, response.get_data()[:300])



@pytest.mark.parametrize("number", [b"1e-999999999", b"1e999999"])
def test_a_json_number_outside_float_range_is_refused_not_read_as_zero(client, store, number):
    merchant, _ = merchant_with_endpoints(store, "http://127.0.0.1:9/hook")
    body = json.dumps(_stk("AMOUNT")).encode().replace(b'"AMOUNT"', number)
    response = client.post(callback_url(merchant, "stk"), data=body, content_type="application/json")
    assert response.status_code == 400 and "out of range" in response.get_json()["error"]["message"]
    with store.read() as session:
        assert list(session.scalars(select(Event))) == []
