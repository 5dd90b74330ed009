"""POST /v1/endpoints/<id>/test: one example event, marked test, through the real worker to that endpoint."""

from __future__ import annotations

from sqlalchemy import select

from factories import api_key, merchant_with_endpoints
from payhook_shared import catalog, signing
from payhook_shared.store import Delivery, Email, Endpoint, Event
from support import Receiver


def test_a_working_endpoint_answers_delivered_with_the_attempt(client, store, receiver, delivery_worker):
    merchant, [endpoint, other] = merchant_with_endpoints(store, receiver.url, receiver.url + "/other")
    delivery_worker()
    response = client.post(f"/v1/endpoints/{endpoint.id}/test", json={"type": "mpesa.stk_push"},
                           headers=api_key(store, merchant.id))
    assert response.status_code == 200, response.get_json()
    answer = response.get_json()
    assert answer["delivered"] is True and answer["status"] == 200 and answer["category"] == "success"
    assert answer["duration_ms"] >= 0 and answer["type"] == "mpesa.stk_push"
    [request] = receiver.received  # to the endpoint under test only
    assert request.path == "/webhooks"
    body = request.json()
    assert body["test"] is True and body["type"] == "mpesa.stk_push" and body["id"] == answer["event_id"]
    # The real STK normaliser built it: the fixture's receipt and amount, in KES.
    example = catalog.example_body(catalog.by_example_type("mpesa.stk_push"))
    assert body["data"]["receipt"] == example["data"]["receipt"] and body["data"]["amount"] == "1.00"
    signing.verify(endpoint.secret, request.headers, request.body)  # raises if unsigned or wrongly signed
    with store.read() as session:
        assert session.scalars(select(Email)).all() == []  # a test mails nobody


def test_a_refusing_endpoint_shows_its_category_once_and_keeps_its_health(client, store, delivery_worker):
    refusing = Receiver().start()
    refusing.respond = lambda req: (503, {}, b"down for maintenance")
    try:
        merchant, [endpoint] = merchant_with_endpoints(store, refusing.url)
        delivery_worker(circuit_threshold=1)
        response = client.post(f"/v1/endpoints/{endpoint.id}/test", json={"type": "order.paid"},
                               headers=api_key(store, merchant.id))
        answer = response.get_json()
        assert response.status_code == 200, answer
        assert answer["delivered"] is False and answer["status"] == 503 and answer["category"] == "server_error"
        assert answer["response"] == "down for maintenance"
        assert len(refusing.received) == 1 and refusing.received[0].json()["test"] is True
        with store.read() as session:
            row = session.get(Endpoint, endpoint.id)
            assert (row.consecutive_failures, row.circuit_open_until, row.enabled) == (0, None, True)
            assert session.get(Delivery, answer["delivery_id"]).attempts == 1
    finally:
        refusing.stop()


def test_another_merchants_endpoint_is_unknown(client, store, receiver):
    mine, _ = merchant_with_endpoints(store, receiver.url)
    _, [theirs] = merchant_with_endpoints(store, receiver.url)
    key = api_key(store, mine.id)
    foreign = client.post(f"/v1/endpoints/{theirs.id}/test", json={"type": "mpesa.stk_push"}, headers=key)
    unknown = client.post("/v1/endpoints/ep_00000000/test", json={"type": "mpesa.stk_push"}, headers=key)
    assert foreign.status_code == unknown.status_code == 404
    assert foreign.get_json()["error"]["code"] == unknown.get_json()["error"]["code"]
    with store.read() as session:
        assert session.scalars(select(Event)).all() == []


def test_an_unknown_type_is_refused(client, store, receiver):
    merchant, [endpoint] = merchant_with_endpoints(store, receiver.url)
    response = client.post(f"/v1/endpoints/{endpoint.id}/test", json={"type": "nope.nothing"},
                           headers=api_key(store, merchant.id))
    assert response.status_code == 400 and "type" in response.get_json()["error"]["message"]
