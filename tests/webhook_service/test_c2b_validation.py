"""C2B validation decisions: accept_all, rules, and forwarding to the merchant with a fallback."""

from __future__ import annotations

import json
import time

import pytest
from sqlalchemy import select

from factories import callback_url, fixture_json, merchant_with_endpoints, set_merchant_settings
from payhook_shared.store import Event

ACCEPT = {"ResultCode": "0", "ResultDesc": "Accepted"}


def reject(code: str) -> dict:
    return {"ResultCode": code, "ResultDesc": "Rejected"}


def validate(client, merchant, **changes):
    body = json.dumps(fixture_json("mpesa/c2b_validation.json") | changes).encode()
    response = client.post(callback_url(merchant, "c2b-validation"), data=body, content_type="application/json")
    assert response.status_code == 200
    return response.get_json()


RULES = {"mode": "rules", "min_amount": "10", "max_amount": 150000, "account_pattern": "invoice[0-9]{3}",
         "shortcodes": ["600638", 600639], "require_name": True}


@pytest.mark.parametrize("changes, answer", [
    ({}, ACCEPT),
    ({"BusinessShortCode": 600639}, ACCEPT),
    ({"TransAmount": 150000}, ACCEPT),
    ({"BusinessShortCode": "999999"}, reject("C2B00015")),
    ({"MSISDN": ""}, reject("C2B00011")),
    ({"FirstName": "", "LastName": ""}, reject("C2B00014")),
    ({"TransAmount": "9.99"}, reject("C2B00013")),
    ({"TransAmount": "150000.01"}, reject("C2B00013")),
    ({"TransAmount": "ten"}, reject("C2B00013")),
    ({"TransAmount": "1e999999"}, reject("C2B00013")),
    ({"TransAmount": "1,000"}, reject("C2B00013")),
    ({"TransAmount": [1]}, reject("C2B00013")),
    ({"BillRefNumber": "invoice0081"}, reject("C2B00012")),
    ({"BillRefNumber": ""}, reject("C2B00012")),
])
def test_rules(client, store, changes, answer):
    merchant, _ = merchant_with_endpoints(store, "http://127.0.0.1:9/a")
    set_merchant_settings(store, merchant, {"c2b_validation": RULES})
    assert validate(client, merchant, **changes) == answer


def test_decision_is_recorded_with_the_request(client, store):
    merchant, _ = merchant_with_endpoints(store, "http://127.0.0.1:9/a")
    set_merchant_settings(store, merchant, {"c2b_validation": RULES})
    assert validate(client, merchant, TransAmount="1") == reject("C2B00013")
    with store.read() as session:
        event = session.scalars(select(Event)).one()
    assert (event.type, event.details["decision"], event.details["decision_code"]) == (
        "mpesa.c2b.validation", "rejected", "C2B00013")


@pytest.mark.parametrize("config, answer", [
    (None, ACCEPT),
    ({"mode": "accept_all"}, ACCEPT),
    ({"mode": "sometimes"}, ACCEPT),
    ({"mode": "sometimes", "fallback": "reject"}, reject("C2B00016")),
    ({"mode": "rules", "account_pattern": "([", "fallback": "reject"}, reject("C2B00016")),
    ({"mode": "rules", "min_amount": "lots", "fallback": "reject"}, reject("C2B00016")),
    ({"mode": "forward", "fallback": "reject"}, reject("C2B00016")),
    ("not an object", ACCEPT),
])
def test_unusable_settings_apply_the_fallback(client, store, config, answer):
    merchant, _ = merchant_with_endpoints(store, "http://127.0.0.1:9/a")
    if config is not None:
        set_merchant_settings(store, merchant, {"c2b_validation": config})
    assert validate(client, merchant) == answer


@pytest.mark.parametrize("merchant_answer, answer", [
    ((200, {"ResultCode": 0, "ResultDesc": "Accepted"}), ACCEPT),
    ((200, {"ResultCode": "C2B00012", "ResultDesc": "Rejected"}), reject("C2B00012")),
    ((200, {"ResultCode": "C2B00099"}), reject("C2B00016")),
    ((200, ["not", "an", "object"]), reject("C2B00016")),
    ((500, {"ResultCode": "0"}), reject("C2B00016")),
])
def test_forward_passes_on_the_merchants_answer(client, store, receiver, merchant_answer, answer):
    status, payload = merchant_answer
    receiver.respond = lambda req: (status, {"content-type": "application/json"}, json.dumps(payload).encode())
    merchant, _ = merchant_with_endpoints(store, "http://127.0.0.1:9/a")
    set_merchant_settings(store, merchant, {"c2b_validation": {
        "mode": "forward", "forward_url": receiver.url, "fallback": "reject"}})
    assert validate(client, merchant) == answer
    (forwarded,) = receiver.received
    assert forwarded.body == json.dumps(fixture_json("mpesa/c2b_validation.json")).encode()
    assert forwarded.headers["content-type"] == "application/json"


@pytest.mark.parametrize("fallback, answer", [("accept", ACCEPT), ("reject", reject("C2B00016"))])
def test_forward_timeout_applies_the_fallback_in_time(client, store, receiver, fallback, answer):
    def slow(req):
        time.sleep(2)
        return 200, {}, b'{"ResultCode": "C2B00012"}'

    receiver.respond = slow
    merchant, _ = merchant_with_endpoints(store, "http://127.0.0.1:9/a")
    set_merchant_settings(store, merchant, {"c2b_validation": {
        "mode": "forward", "forward_url": receiver.url, "forward_timeout": 0.3, "fallback": fallback}})
    started = time.monotonic()
    assert validate(client, merchant) == answer
    assert time.monotonic() - started < 1.5


def test_forward_to_nobody_applies_the_fallback(client, store):
    merchant, _ = merchant_with_endpoints(store, "http://127.0.0.1:9/a")
    set_merchant_settings(store, merchant, {"c2b_validation": {
        "mode": "forward", "forward_url": "http://127.0.0.1:9/validate", "fallback": "reject"}})
    assert validate(client, merchant) == reject("C2B00016")


def test_malformed_validation_request_is_400(client, store):
    merchant, _ = merchant_with_endpoints(store, "http://127.0.0.1:9/a")
    response = client.post(callback_url(merchant, "c2b-validation"), data=b'{"MSISDN": [1]}',
                           content_type="application/json")
    assert response.status_code == 400 and "MSISDN" in response.get_json()["error"]["message"]


@pytest.fixture
def unlisted_client(database_url, redis_url):
    """The webhook-service with no ENDPOINT_ALLOWLIST: loopback is as forbidden as in production."""
    from payhook_webhook.app import create_app

    app = create_app({"database_url": database_url, "redis_url": redis_url, "log_format": "text"})
    app.config["TESTING"] = True
    yield app.test_client()
    app.extensions["payhook.store"].dispose()


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_forward_to_a_non_public_address_is_refused_and_never_sent(unlisted_client, store, receiver, host):
    receiver.respond = lambda req: (200, {"content-type": "application/json"}, b'{"ResultCode": "0"}')
    merchant, _ = merchant_with_endpoints(store, "http://127.0.0.1:9/a")
    set_merchant_settings(store, merchant, {"c2b_validation": {
        "mode": "forward", "forward_url": f"http://{host}:{receiver.port}/validate", "fallback": "reject"}})
    assert validate(unlisted_client, merchant) == reject("C2B00016")
    assert receiver.received == []
    with store.read() as session:
        event = session.scalars(select(Event)).one()
    assert "SSRF" in event.details["decision_reason"]


def test_forward_connects_to_the_checked_address_with_the_urls_host(receiver):
    from payhook_shared.callbacks.mpesa import load_c2b_validation
    from payhook_webhook import c2b

    receiver.respond = lambda req: (200, {"content-type": "application/json"}, b'{"ResultCode": "C2B00012"}')
    config = {"c2b_validation": {"mode": "forward", "forward_url": f"http://localhost:{receiver.port}/v?x=1"}}
    request = fixture_json("mpesa/c2b_validation.json")
    decision = c2b.decide(config, load_c2b_validation(request), b"{}", c2b.http_pool(), ("127.0.0.0/8", "::1/128"))
    assert decision.code == "C2B00012"
    [forwarded] = receiver.received
    assert forwarded.headers["host"] == f"localhost:{receiver.port}" and forwarded.path == "/v?x=1"
