"""POST /v1/events: generic payment events, recorded and queued like callbacks, idempotent."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from factories import api_key, merchant_with_endpoints
from payhook_shared.store import Delivery, Email, Event
from support import queued_deliveries


def counts(store) -> tuple[int, int, int]:
    with store.read() as session:
        return tuple(session.scalar(select(func.count()).select_from(m)) for m in (Event, Delivery, Email))


def event_body(**overrides) -> dict:
    return {"type": "shop.payment", "idempotency_key": "order-1",
            "data": {"status": "succeeded", "amount": "250.50", "currency": "kes"}, **overrides}


def test_event_is_normalised_recorded_and_queued(client, store, redis_client):
    merchant, _ = merchant_with_endpoints(store, "https://shop.example/a", "https://shop.example/b")
    response = client.post("/v1/events", json=event_body(customer_email="buyer@example.test"),
                           headers=api_key(store, merchant.id))
    assert response.status_code == 201
    event_id = response.get_json()["id"]
    assert event_id.startswith("evt_")
    assert counts(store) == (1, 2, 2)  # the merchant's notice and the buyer's receipt
    assert len(queued_deliveries(redis_client, "delivery.normal")) == 2
    with store.read() as session:
        event = session.get(Event, event_id)
    assert (event.provider, event.type, event.status) == ("api", "shop.payment", "succeeded")
    assert (event.amount_minor, event.currency) == (25050, "KES")
    assert event.dedupe_key == "api:order-1" and event.customer_email == "buyer@example.test"
    assert event.merchant_id == merchant.id


def test_a_repeat_answers_200_with_the_same_id_and_creates_nothing(client, store, redis_client):
    merchant, _ = merchant_with_endpoints(store, "https://shop.example/a")
    headers = api_key(store, merchant.id)
    first = client.post("/v1/events", json=event_body(), headers=headers)
    again = client.post("/v1/events", json=event_body(), headers=headers)
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.get_json() == again.get_json()
    assert counts(store) == (1, 1, 1)
    assert redis_client.llen("dramatiq:delivery.normal") == 1


@pytest.mark.parametrize("data, status, amount_minor", [
    ({"status": "failed"}, "failed", None),
    ({"status": "paid"}, "unknown", None),
    ({"status": 7}, "unknown", None),
    ({}, "unknown", None),
    ({"status": "succeeded", "amount": 100, "currency": "UGX"}, "succeeded", 100),
])
def test_status_and_amount_come_from_data(client, store, data, status, amount_minor):
    merchant, _ = merchant_with_endpoints(store)
    response = client.post("/v1/events", json=event_body(data=data), headers=api_key(store, merchant.id))
    assert response.status_code == 201
    with store.read() as session:
        event = session.get(Event, response.get_json()["id"])
    assert (event.status, event.amount_minor) == (status, amount_minor)


def test_priority_is_explicit_or_classified(client, store, redis_client):
    merchant, _ = merchant_with_endpoints(store, "https://shop.example/a")
    headers = api_key(store, merchant.id)
    client.post("/v1/events", json=event_body(idempotency_key="a", priority="low"), headers=headers)
    client.post("/v1/events", json=event_body(idempotency_key="b", priority="urgent"), headers=headers)
    client.post("/v1/events", json=event_body(idempotency_key="c", data={"status": "failed"}), headers=headers)
    client.post("/v1/events", json=event_body(idempotency_key="d", data={
        "status": "succeeded", "amount": "100000", "currency": "KES"}), headers=headers)
    assert [redis_client.llen(f"dramatiq:delivery.{p}") for p in ("urgent", "high", "normal", "low")] == [2, 1, 0, 1]


def test_admin_key_names_the_merchant(client, store):
    merchant, _ = merchant_with_endpoints(store)
    admin = api_key(store)
    response = client.post("/v1/events", json=event_body(), headers=admin)
    assert response.status_code == 400
    assert response.get_json()["error"]["message"] == "merchant_id: is required with an admin API key"
    response = client.post("/v1/events", json=event_body(merchant_id=merchant.id), headers=admin)
    assert response.status_code == 201
    assert client.post("/v1/events", json=event_body(merchant_id="mch_00"), headers=admin).status_code == 404


def test_merchant_key_cannot_post_for_another_merchant(client, store):
    mine, _ = merchant_with_endpoints(store)
    theirs, _ = merchant_with_endpoints(store)
    response = client.post("/v1/events", json=event_body(merchant_id=theirs.id), headers=api_key(store, mine.id))
    assert response.status_code == 404
    assert counts(store) == (0, 0, 0)


def test_disabled_merchant_gets_no_events(client, store):
    merchant, _ = merchant_with_endpoints(store)
    admin = api_key(store)
    client.patch(f"/v1/merchants/{merchant.id}", json={"enabled": False}, headers=admin)
    response = client.post("/v1/events", json=event_body(merchant_id=merchant.id), headers=admin)
    assert response.status_code == 403
    assert counts(store) == (0, 0, 0)


@pytest.mark.parametrize("body, problem", [
    ({"data": {}, "idempotency_key": "k"}, "type: Missing data for required field."),
    ({"type": "a b", "data": {}, "idempotency_key": "k"}, "type: may contain only"),
    ({"type": "t", "idempotency_key": "k"}, "data: Missing data for required field."),
    ({"type": "t", "data": [], "idempotency_key": "k"}, "data: Not a valid mapping type."),
    ({"type": "t", "data": {}}, "idempotency_key: Missing data for required field."),
    ({"type": "t", "data": {}, "idempotency_key": "k", "priority": "asap"}, "priority: must be one of"),
    ({"type": "t", "data": {}, "idempotency_key": "k", "customer_email": "x"}, "customer_email: Not a valid email"),
    ({"type": "t", "data": {"amount": "5"}, "idempotency_key": "k"},
     "data.currency: is required when data.amount is given"),
    ({"type": "t", "data": {"amount": "5", "currency": "shilling"}, "idempotency_key": "k"},
     "data.currency: must be a three-letter ISO 4217 code"),
    ({"type": "t", "data": {"amount": "-5", "currency": "KES"}, "idempotency_key": "k"}, "data.amount: "),
    ({"type": "t", "data": {"amount": "1.001", "currency": "KES"}, "idempotency_key": "k"},
     "data.amount: more precision than KES allows"),
    ({"type": "t", "data": {"amount": "lots", "currency": "KES"}, "idempotency_key": "k"}, "data.amount: "),
])
def test_bad_events_get_400_naming_the_field_and_change_nothing(client, store, redis_client, body, problem):
    merchant, _ = merchant_with_endpoints(store, "https://shop.example/a")
    response = client.post("/v1/events", json=body, headers=api_key(store, merchant.id))
    assert response.status_code == 400
    assert problem in response.get_json()["error"]["message"]
    assert counts(store) == (0, 0, 0)
    assert redis_client.llen("dramatiq:delivery.normal") == 0


def test_events_need_a_key(client):
    assert client.post("/v1/events", json=event_body()).status_code == 401
