"""An endpoint's custom headers and event-type families, from the API to a real receiver through the worker."""

from __future__ import annotations

from sqlalchemy import select

from factories import api_key, fixture_bytes, merchant_with_endpoints, stk_url
from payhook_shared import signing
from payhook_shared.store import Delivery, Endpoint

HEADERS = {"Authorization": "Bearer gateway-token-123", "X-Shop-Tenant": "north"}


def add_endpoint(client, store, merchant_id: str, url: str, **fields) -> dict:
    response = client.post(f"/v1/merchants/{merchant_id}/endpoints", headers=api_key(store, merchant_id),
                           json={"url": url, **fields})
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def test_a_delivered_webhook_carries_the_custom_headers_and_its_signature_verifies(client, store, receiver,
                                                                                  delivery_worker, caplog):
    merchant, _ = merchant_with_endpoints(store)
    endpoint = add_endpoint(client, store, merchant.id, receiver.url, custom_headers=HEADERS,
                            event_types=["mpesa.stk_push"])
    assert endpoint["custom_headers"] == HEADERS  # shown as set
    delivery_worker()
    response = client.post(stk_url(merchant), data=fixture_bytes("mpesa/stk_success.json"),
                           content_type="application/json")
    assert response.status_code == 200
    [webhook] = receiver.wait_for(1)
    assert webhook.headers["authorization"] == "Bearer gateway-token-123"
    assert webhook.headers["x-shop-tenant"] == "north"
    signing.verify(endpoint["secret"], webhook.headers, webhook.body)
    assert webhook.headers["content-type"] == "application/json"
    assert "gateway-token-123" not in caplog.text


def test_a_test_event_carries_them_too(client, store, receiver, delivery_worker):
    merchant, _ = merchant_with_endpoints(store)
    endpoint = add_endpoint(client, store, merchant.id, receiver.url, custom_headers=HEADERS)
    delivery_worker()
    response = client.post(f"/v1/endpoints/{endpoint['id']}/test", json={"type": "mpesa.stk_push"},
                           headers=api_key(store, merchant.id))
    assert response.status_code == 200 and response.get_json()["delivered"] is True, response.get_json()
    [webhook] = receiver.received
    assert webhook.headers["authorization"] == HEADERS["Authorization"]
    signing.verify(endpoint["secret"], webhook.headers, webhook.body)


def test_a_stored_header_never_replaces_one_of_payhooks(client, store, receiver, delivery_worker):
    # Written past the API's checks, as an old row or a hand edit could be: the worker still keeps its own.
    merchant, [endpoint] = merchant_with_endpoints(store, receiver.url)
    forged = {"webhook-signature": "v1,forged", "Webhook-Id": "evt_forged", "content-type": "text/plain",
              "X-Bad": "a\r\nInjected: yes", "X-Kept": "yes"}
    with store.write() as session:
        session.get(Endpoint, endpoint.id).custom_headers = forged
    delivery_worker()
    response = client.post(stk_url(merchant), data=fixture_bytes("mpesa/stk_success.json"),
                           content_type="application/json")
    assert response.status_code == 200
    [webhook] = receiver.wait_for(1)
    signing.verify(endpoint.secret, webhook.headers, webhook.body)
    assert webhook.headers["webhook-id"].startswith("evt_") and webhook.headers["webhook-id"] != "evt_forged"
    assert webhook.headers["content-type"] == "application/json"
    assert webhook.headers["x-kept"] == "yes" and "x-bad" not in webhook.headers and "injected" not in webhook.headers


def test_a_gateway_family_takes_every_type_of_that_gateway_and_nothing_else(client, store, receiver,
                                                                           delivery_worker):
    merchant, _ = merchant_with_endpoints(store)
    stripe = add_endpoint(client, store, merchant.id, receiver.url + "/stripe", event_types=["stripe.*"])
    add_endpoint(client, store, merchant.id, receiver.url + "/mpesa", event_types=["mpesa.stk_push"])
    delivery_worker()
    headers = api_key(store, merchant.id)
    for key, event_type in (("k1", "stripe.customer.created"), ("k2", "stripex.charge"), ("k3", "order.paid")):
        response = client.post("/v1/events", headers=headers, json={
            "type": event_type, "idempotency_key": key, "data": {"status": "succeeded"}})
        assert response.status_code in (200, 201, 202), response.get_json()
    [webhook] = receiver.wait_for(1)
    assert webhook.path == "/webhooks/stripe" and webhook.json()["type"] == "stripe.customer.created"
    with store.read() as session:  # deliveries are recorded with the events: one, to the family's endpoint
        assert session.scalars(select(Delivery.endpoint_id)).all() == [stripe["id"]]
