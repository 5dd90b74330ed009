"""Every M-Pesa callback route: accepted on its own route, recorded verbatim, answered as Safaricom expects."""

from __future__ import annotations

import io
import re

import pytest
from sqlalchemy import func, select

from factories import callback_url, fixture_bytes, merchant_with_endpoints
from payhook_shared.store import Delivery, Email, Event
from payhook_webhook.api.callbacks import KINDS
from payhook_webhook.services.merchants import callback_urls

ACCEPTED = {"ResultCode": 0, "ResultDesc": "Accepted"}
SUCCESS = {"ResultCode": 0, "ResultDesc": "Success"}
VALIDATED = {"ResultCode": "0", "ResultDesc": "Accepted"}

# fixture, kind, answer, event type, status, queue the delivery lands on, emails sent
ROUTES = [
    ("stk_success.json", "stk", ACCEPTED, "mpesa.stk_push", "succeeded", "normal", 1),
    ("stk_string_codes.json", "stk", ACCEPTED, "mpesa.stk_push", "succeeded", "normal", 1),
    ("stk_cancelled_1032.json", "stk", ACCEPTED, "mpesa.stk_push", "failed", "urgent", 0),
    ("c2b_confirmation_plain.json", "c2b-confirmation", SUCCESS, "mpesa.c2b.confirmation", "succeeded",
     "normal", 1),
    ("c2b_confirmation_masked.json", "c2b-confirmation", SUCCESS, "mpesa.c2b.confirmation", "succeeded",
     "normal", 1),
    ("c2b_confirmation_hashed.json", "c2b-confirmation", SUCCESS, "mpesa.c2b.confirmation", "succeeded",
     "normal", 1),
    ("b2c_result_success.json", "b2c-result", ACCEPTED, "mpesa.b2c", "succeeded", "normal", 0),
    ("b2c_result_failed.json", "b2c-result", ACCEPTED, "mpesa.b2c", "failed", "urgent", 0),
    ("b2c_timeout.json", "b2c-timeout", ACCEPTED, "mpesa.b2c", "unknown", "urgent", 0),
    ("b2b_result_success.json", "b2b-result", ACCEPTED, "mpesa.b2b", "succeeded", "normal", 0),
    ("reversal_result_success.json", "reversal-result", ACCEPTED, "mpesa.reversal", "succeeded", "urgent", 0),
    ("transaction_status_result.json", "status-result", ACCEPTED, "mpesa.transaction_status", "succeeded",
     "normal", 0),
    ("account_balance_result.json", "balance-result", ACCEPTED, "mpesa.account_balance", "succeeded", "low", 0),
    ("account_balance_timeout.json", "balance-timeout", ACCEPTED, "mpesa.account_balance", "unknown", "low", 0),
]


def counts(store) -> tuple[int, int, int]:
    with store.read() as session:
        return tuple(session.scalar(select(func.count()).select_from(m)) for m in (Event, Delivery, Email))


@pytest.mark.parametrize("name, kind, answer, event_type, status, queue, emails", ROUTES, ids=[r[0] for r in ROUTES])
def test_fixture_accepted_on_its_route(client, store, redis_client, name, kind, answer, event_type, status,
                                       queue, emails):
    merchant, _ = merchant_with_endpoints(store, "http://127.0.0.1:9/a")
    body = fixture_bytes(f"mpesa/{name}")
    for _ in range(2):  # the repeat is answered the same and changes nothing
        response = client.post(callback_url(merchant, kind), data=body, content_type="application/json")
        assert response.status_code == 200 and response.get_json() == answer
    assert counts(store) == (1, 1, emails)
    assert redis_client.llen(f"dramatiq:delivery.{queue}") == 1
    with store.read() as session:
        event = session.scalars(select(Event)).one()
    assert (event.type, event.status, event.raw_payload) == (event_type, status, body.decode())


def test_c2b_validation_is_recorded_but_delivered_only_to_endpoints_that_ask(client, store):
    merchant, _ = merchant_with_endpoints(store, "http://127.0.0.1:9/all")
    merchant_with_endpoints(store)  # another merchant: nothing of theirs is touched
    response = client.post(callback_url(merchant, "c2b-validation"), data=fixture_bytes("mpesa/c2b_validation.json"),
                           content_type="application/json")
    assert response.get_json() == VALIDATED
    assert counts(store) == (1, 0, 0)
    with store.read() as session:
        event = session.scalars(select(Event)).one()
    assert (event.type, event.status, event.priority) == ("mpesa.c2b.validation", "unknown", 3)
    assert event.details["decision"] == "accepted"

    subscriber, _ = merchant_with_endpoints(store, "http://127.0.0.1:9/v", event_types=["mpesa.c2b.validation"])
    client.post(callback_url(subscriber, "c2b-validation"), data=fixture_bytes("mpesa/c2b_validation.json"),
                content_type="application/json")
    assert counts(store) == (2, 1, 0)


def test_same_transaction_on_two_kinds_is_two_events(client, store):
    merchant, _ = merchant_with_endpoints(store, "http://127.0.0.1:9/a")
    body = fixture_bytes("mpesa/b2c_result_success.json")
    for kind in ("b2c-result", "b2c-timeout"):
        assert client.post(callback_url(merchant, kind), data=body, content_type="application/json").status_code == 200
    assert counts(store)[0] == 2


def test_callback_on_the_wrong_route_is_refused_naming_the_field(client, store):
    merchant, _ = merchant_with_endpoints(store, "http://127.0.0.1:9/a")
    response = client.post(callback_url(merchant, "b2c-result"), data=fixture_bytes("mpesa/stk_success.json"),
                           content_type="application/json")
    assert response.status_code == 400 and "Result: Missing data" in response.get_json()["error"]["message"]
    response = client.post(callback_url(merchant, "c2b-confirmation"),
                           data=fixture_bytes("mpesa/b2c_result_success.json"), content_type="application/json")
    assert response.status_code == 400 and "TransID" in response.get_json()["error"]["message"]
    assert client.post(callback_url(merchant, "mystery"), data=b"{}",
                       content_type="application/json").status_code == 404
    assert counts(store) == (0, 0, 0)


@pytest.mark.parametrize("kind", ["stk", "c2b-validation", "c2b-confirmation", "b2c-result", "balance-timeout"])
@pytest.mark.parametrize("body, content_type, status", [
    (b"[]", "application/json", 400),
    (b'"text"', "application/json", 400),
    (b"null", "application/json", 400),
    (b'{"a": 1e400}', "application/json", 400),
    (b'{"a":' * 200 + b"1" + b"}" * 200, "application/json", 400),
    (b"[" * 100_000 + b"]" * 100_000, "application/json", 413),
    (b"{}", "text/plain", 415),
    (b"{}", None, 415),
])
def test_hard_edges_are_4xx(client, store, kind, body, content_type, status):
    merchant, _ = merchant_with_endpoints(store, "http://127.0.0.1:9/a")
    response = client.post(callback_url(merchant, kind), data=body, content_type=content_type)
    assert response.status_code == status, response.get_data()
    assert response.get_json()["error"]["message"]
    assert counts(store) == (0, 0, 0)


def _chunked(client, url: str, body: bytes):
    # What a WSGI server hands over for a chunked request: no Content-Length, a stream it ends itself.
    return client.post(url, input_stream=io.BytesIO(body), content_type="application/json",
                       headers={"Transfer-Encoding": "chunked"}, environ_overrides={"wsgi.input_terminated": True})


def test_a_chunked_body_over_the_limit_is_refused_not_cut(client, store):
    merchant, _ = merchant_with_endpoints(store, "http://127.0.0.1:9/a")
    stk = fixture_bytes("mpesa/stk_success.json")
    # Valid JSON within the first 64 KiB: cut at the limit it would parse and be recorded.
    response = _chunked(client, callback_url(merchant, "stk"), stk + b" " * (64 * 1024))
    assert response.status_code == 413, response.get_data()
    assert response.get_json()["error"]["code"] == "request_entity_too_large"
    assert counts(store) == (0, 0, 0)
    # A chunked body of exactly the limit is within it.
    response = _chunked(client, callback_url(merchant, "stk"), stk + b" " * (64 * 1024 - len(stk)))
    assert response.status_code == 200, response.get_data()
    assert counts(store)[0] == 1


def test_every_kind_has_a_route_and_a_callback_url_safaricom_accepts(store):
    merchant, _ = merchant_with_endpoints(store)
    urls = callback_urls("https://relay.example", merchant)
    assert set(urls) == set(KINDS) == {
        "stk", "c2b-validation", "c2b-confirmation", "b2c-result", "b2b-result", "reversal-result",
        "status-result", "balance-result", "b2c-timeout", "b2b-timeout", "reversal-timeout", "status-timeout",
        "balance-timeout"}
    banned = re.compile(r"m-?pesa|safaricom|exe|exec|cmd|sql|query", re.IGNORECASE)
    for kind, url in urls.items():
        assert url == f"https://relay.example/cb/{merchant.id}/{merchant.callback_token}/{kind}"
        assert not banned.search(url.split("://", 1)[1]), url
