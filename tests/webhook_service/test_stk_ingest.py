"""The STK callback route: what is accepted, what is refused, and that refusals leave no trace."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select, text

from factories import fixture_bytes, fixture_json, merchant_with_endpoints, stk_url
from payhook_shared.store import Delivery, Email, Event

ACCEPTED = {"ResultCode": 0, "ResultDesc": "Accepted"}
from support import queued_deliveries


def counts(store) -> tuple[int, int, int]:
    with store.read() as session:
        return tuple(session.scalar(select(func.count()).select_from(m)) for m in (Event, Delivery, Email))


def queued(redis_client) -> int:
    return sum(redis_client.llen(k) for k in redis_client.keys("dramatiq:*") if redis_client.type(k) == b"list")


def test_accepted_callback_is_recorded_and_queued(client, store, redis_client):
    merchant, _ = merchant_with_endpoints(store, "http://127.0.0.1:9/a", "http://127.0.0.1:9/b")
    response = client.post(stk_url(merchant), data=fixture_bytes("mpesa/stk_success.json"),
                           content_type="application/json")
    assert response.status_code == 200 and response.get_json() == ACCEPTED
    assert counts(store) == (1, 2, 1)
    assert len(queued_deliveries(redis_client, "delivery.normal")) == 2  # in one message
    assert redis_client.llen("dramatiq:delivery.normal") == 1
    assert redis_client.llen("dramatiq:mail.normal") == 1
    with store.read() as session:
        event = session.scalars(select(Event)).one()
    assert event.raw_payload == fixture_bytes("mpesa/stk_success.json").decode()
    assert (event.status, event.amount_minor, event.receipt) == ("succeeded", 100, "NLJ7RT61SV")


def test_failed_payment_is_urgent_and_sends_no_email(client, store, redis_client):
    merchant, _ = merchant_with_endpoints(store, "http://127.0.0.1:9/a")
    response = client.post(stk_url(merchant), data=fixture_bytes("mpesa/stk_cancelled_1032.json"),
                           content_type="application/json")
    assert response.status_code == 200
    assert counts(store) == (1, 1, 0)
    assert len(queued_deliveries(redis_client, "delivery.urgent")) == 1


def test_repeated_callback_is_one_event(client, store, redis_client):
    merchant, _ = merchant_with_endpoints(store, "http://127.0.0.1:9/a")
    for _ in range(3):
        response = client.post(stk_url(merchant), data=fixture_bytes("mpesa/stk_success.json"),
                               content_type="application/json")
        assert response.get_json() == ACCEPTED
    assert counts(store) == (1, 1, 1)
    assert len(queued_deliveries(redis_client, "delivery.normal")) == 1


def _without_checkout_id() -> bytes:
    payload = fixture_json("mpesa/stk_success.json")
    del payload["Body"]["stkCallback"]["CheckoutRequestID"]
    return json.dumps(payload).encode()


@pytest.mark.parametrize("body, problem", [
    (b'{"Body": {"stkCallback": ', "not valid JSON"),
    (b"[1, 2, 3]", "must be a JSON object, got an array"),
    (_without_checkout_id(), "Body.stkCallback.CheckoutRequestID"),
    (b'{"Body": {"stkCallback": {"MerchantRequestID": "1", "CheckoutRequestID": "2", "ResultCode": true}}}',
     "Body.stkCallback.ResultCode"),
    (b'{"Body": []}', "Body: must be a JSON object"),
    (b'{"Body": {"stkCallback": {"MerchantRequestID": "1", "CheckoutRequestID": "", "ResultCode": 0}}}',
     "Body.stkCallback.CheckoutRequestID: must not be empty"),
])
def test_bad_body_is_refused_naming_the_problem_and_changes_nothing(client, store, redis_client, body, problem):
    merchant, _ = merchant_with_endpoints(store, "http://127.0.0.1:9/a")
    response = client.post(stk_url(merchant), data=body, content_type="application/json")
    assert response.status_code == 400
    assert problem in response.get_json()["error"]["message"]
    assert counts(store) == (0, 0, 0)
    assert queued(redis_client) == 0


def test_wrong_token_or_merchant_is_not_found(client, store):
    merchant, _ = merchant_with_endpoints(store, "http://127.0.0.1:9/a")
    body = fixture_bytes("mpesa/stk_success.json")
    assert client.post(f"/cb/{merchant.id}/{'0' * 32}/stk", data=body,
                       content_type="application/json").status_code == 404
    assert client.post(f"/cb/mch_nobody/{merchant.callback_token}/stk", data=body,
                       content_type="application/json").status_code == 404
    assert counts(store) == (0, 0, 0)


def test_non_json_content_type_is_refused(client, store):
    merchant, _ = merchant_with_endpoints(store, "http://127.0.0.1:9/a")
    response = client.post(stk_url(merchant), data=fixture_bytes("mpesa/stk_success.json"),
                           content_type="text/plain")
    assert response.status_code == 415


def test_unreachable_database_is_5xx_not_accepted(redis_url):
    from payhook_webhook.app import create_app

    app = create_app({"database_url": "postgresql://nobody@127.0.0.1:1/none", "redis_url": redis_url})
    response = app.test_client().post("/cb/mch_x/0123/stk", data=fixture_bytes("mpesa/stk_success.json"),
                                      content_type="application/json")
    assert response.status_code == 503
    assert response.get_json()["error"]["code"] == "store_unavailable"


def test_failure_mid_transaction_leaves_nothing_half_written(client, store, redis_client):
    merchant, _ = merchant_with_endpoints(store, "http://127.0.0.1:9/a")
    # The database itself refuses the delivery rows, after the event row was written.
    with store.engine.begin() as conn:
        if store.dialect == "sqlite":
            conn.execute(text("CREATE TRIGGER refuse BEFORE INSERT ON deliveries "
                              "BEGIN SELECT RAISE(ABORT, 'disk full'); END"))
        else:
            conn.execute(text("CREATE FUNCTION refuse() RETURNS trigger AS $$ BEGIN "
                              "RAISE EXCEPTION 'disk full'; END $$ LANGUAGE plpgsql"))
            conn.execute(text("CREATE TRIGGER refuse BEFORE INSERT ON deliveries "
                              "FOR EACH ROW EXECUTE FUNCTION refuse()"))
    response = client.post(stk_url(merchant), data=fixture_bytes("mpesa/stk_success.json"),
                           content_type="application/json")
    assert response.status_code == 503
    assert response.get_json() != ACCEPTED
    assert counts(store) == (0, 0, 0)
    assert queued(redis_client) == 0


def test_health(client):
    assert client.get("/health").status_code == 200
    ready = client.get("/health/ready")
    assert ready.status_code == 200, ready.get_json()
