"""``GET /v1/stream``'s refusals, answered before a stream opens (the streams themselves: tests/cli/)."""

from __future__ import annotations

from factories import api_key, merchant_with_endpoints, record_payment


def test_an_admin_key_must_name_an_existing_merchant(client, store):
    response = client.get("/v1/stream", headers=api_key(store))
    assert response.status_code == 400 and "merchant_id" in response.get_json()["error"]["message"]
    response = client.get("/v1/stream?merchant_id=mch_unknown", headers=api_key(store))
    assert response.status_code == 404 and "mch_unknown" in response.get_json()["error"]["message"]


def test_a_merchant_key_sees_only_its_own_merchant(client, store):
    mine, _ = merchant_with_endpoints(store)
    other, _ = merchant_with_endpoints(store)
    response = client.get(f"/v1/stream?merchant_id={other.id}", headers=api_key(store, mine.id))
    assert response.status_code == 404 and other.id in response.get_json()["error"]["message"]


def test_resuming_needs_an_event_of_the_merchant(client, store, webhook_app):
    mine, _ = merchant_with_endpoints(store)
    other, _ = merchant_with_endpoints(store)
    theirs = record_payment(store, webhook_app.extensions["payhook.broker"], other.id, "mpesa/stk_success.json")
    for last in (theirs, "evt_unknown"):
        response = client.get("/v1/stream", headers={**api_key(store, mine.id), "Last-Event-ID": last})
        assert response.status_code == 404 and last in response.get_json()["error"]["message"]


def test_no_key_is_refused(client):
    assert client.get("/v1/stream").status_code == 401
