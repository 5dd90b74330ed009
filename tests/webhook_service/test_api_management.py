"""Merchant and endpoint management under /v1: create, list by keyset, get, update, disable, rotate."""

from __future__ import annotations

import datetime as dt

import pytest
from marshmallow import ValidationError

from factories import api_key, merchant_with_endpoints
from payhook_shared import endpoint_headers, signing
from payhook_shared.store import Endpoint, Merchant
from payhook_shared.store.models import utcnow
from payhook_webhook.schemas import validate_endpoint_url


@pytest.fixture
def admin(store):
    return api_key(store)


def create_merchant(client, admin, **body):
    response = client.post("/v1/merchants", json={"name": "Shop", **body}, headers=admin)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def test_create_get_and_update_a_merchant(client, store, admin):
    created = create_merchant(client, admin, notification_email="owner@shop.example",
                              priority_rules=[{"status": "failed", "priority": "normal"}])
    assert created["id"].startswith("mch_") and created["enabled"] is True
    assert created["priority_rules"] == [{"status": "failed", "priority": "normal"}]
    assert created["callback_urls"]["stk"].endswith("/stk")

    fetched = client.get(f"/v1/merchants/{created['id']}", headers=admin).get_json()
    assert fetched["name"] == "Shop" and fetched["notification_email"] == "owner@shop.example"

    merchant_headers = api_key(store, created["id"])
    updated = client.patch(f"/v1/merchants/{created['id']}", headers=merchant_headers,
                           json={"name": "Renamed", "priority_rules": None}).get_json()
    assert (updated["name"], updated["priority_rules"]) == ("Renamed", [])
    with store.read() as session:
        assert "priority_rules" not in session.get(Merchant, created["id"]).settings


def test_admin_disables_and_enables_a_merchant(client, store, admin):
    merchant = create_merchant(client, admin)
    disabled = client.patch(f"/v1/merchants/{merchant['id']}", json={"enabled": False}, headers=admin)
    assert disabled.get_json()["enabled"] is False
    with store.read() as session:
        assert session.get(Merchant, merchant["id"]).enabled is False
    enabled = client.patch(f"/v1/merchants/{merchant['id']}", json={"enabled": True}, headers=admin)
    assert enabled.get_json()["enabled"] is True


def test_merchants_list_is_keyset_paginated(client, admin):
    ids = [create_merchant(client, admin, name=f"Shop {i}")["id"] for i in range(5)]
    seen, after, pages = [], None, 0
    while True:
        query = "?limit=2" + (f"&after={after}" if after else "")
        page = client.get(f"/v1/merchants{query}", headers=admin).get_json()
        pages += 1
        seen += [m["id"] for m in page["data"]]
        if not page["has_more"]:
            assert page["next_after"] is None
            break
        after = page["next_after"]
    assert seen == sorted(ids) and pages == 3


@pytest.mark.parametrize("path, body, field", [
    ("/v1/merchants", {}, "name: Missing data for required field."),
    ("/v1/merchants", {"name": ""}, "name: Length must be between 1 and 200."),
    ("/v1/merchants", {"name": "x", "notification_email": "nope"}, "notification_email: Not a valid email"),
    ("/v1/merchants", {"name": "x", "colour": "red"}, "colour: Unknown field."),
    ("/v1/merchants", {"name": "x", "priority_rules": [{"priority": "asap"}]},
     "priority_rules.0.priority: must be one of urgent, high, normal, low"),
    ("/v1/merchants", {"name": "x", "priority_rules": [{"status": "paid", "priority": "low"}]},
     "priority_rules.0.status: Must be one of"),
    ("/v1/merchants", {"name": "x", "priority_rules": [{"min_amount_minor": "5", "priority": "low"}]},
     "priority_rules.0.min_amount_minor: Not a valid integer."),
])
def test_bad_merchant_bodies_get_400_naming_the_field(client, store, admin, path, body, field):
    response = client.post(path, json=body, headers=admin)
    assert response.status_code == 400
    assert field in response.get_json()["error"]["message"]
    with store.read() as session:
        assert session.query(Merchant).count() == 0


def test_bad_query_and_media_type_are_named(client, admin):
    response = client.get("/v1/merchants?limit=0", headers=admin)
    assert response.status_code == 400 and "limit:" in response.get_json()["error"]["message"]
    response = client.post("/v1/merchants", data="name=x", headers=admin,
                           content_type="application/x-www-form-urlencoded")
    assert response.status_code == 415
    response = client.post("/v1/merchants", data=b"[1]", headers=admin, content_type="application/json")
    assert response.status_code == 400 and "must be a JSON object" in response.get_json()["error"]["message"]


def test_endpoint_lifecycle(client, store, admin):
    merchant = create_merchant(client, admin)
    headers = api_key(store, merchant["id"])
    response = client.post(f"/v1/merchants/{merchant['id']}/endpoints", headers=headers, json={
        "url": "https://shop.example/hooks", "description": "orders", "event_types": ["mpesa.stk_push"]})
    assert response.status_code == 201
    created = response.get_json()
    assert created["secret"].startswith("whsec_")
    assert created["event_types"] == ["mpesa.stk_push"] and created["enabled"] is True

    fetched = client.get(f"/v1/endpoints/{created['id']}", headers=headers).get_json()
    assert "secret" not in fetched and fetched["url"] == "https://shop.example/hooks"

    updated = client.patch(f"/v1/endpoints/{created['id']}", headers=headers,
                           json={"event_types": None, "enabled": False, "url": "http://shop.example:8080/h"})
    assert updated.status_code == 200
    body = updated.get_json()
    assert (body["event_types"], body["enabled"], body["url"]) == (None, False, "http://shop.example:8080/h")
    with store.read() as session:
        endpoint = session.get(Endpoint, created["id"])
    assert endpoint.enabled is False and not endpoint.accepts("mpesa.stk_push")

    listed = client.get(f"/v1/merchants/{merchant['id']}/endpoints?limit=10", headers=headers).get_json()
    assert [e["id"] for e in listed["data"]] == [created["id"]] and listed["has_more"] is False


def test_endpoints_list_is_keyset_paginated(client, store, admin):
    merchant, endpoints = merchant_with_endpoints(store, *(f"https://shop.example/{i}" for i in range(3)))
    first = client.get(f"/v1/merchants/{merchant.id}/endpoints?limit=2", headers=admin).get_json()
    second = client.get(f"/v1/merchants/{merchant.id}/endpoints?limit=2&after={first['next_after']}",
                        headers=admin).get_json()
    assert [e["id"] for e in first["data"] + second["data"]] == sorted(e.id for e in endpoints)
    assert second["has_more"] is False


@pytest.mark.parametrize("url, problem", [
    ("ftp://shop.example/hook", "must be an absolute http(s) URL"),
    ("/relative/hook", "must be an absolute http(s) URL"),
    ("https://", "must be an absolute http(s) URL"),
    ("https://user:pass@shop.example/hook", "must not contain credentials"),
    ("https://shop.example:99999/hook", "is not a valid URL"),
    ("https://shop.example/a b", "whitespace"),
    ("https://shop.example/" + "a" * 2048, "at most 2048"),
])
def test_endpoint_urls_must_be_absolute_http(client, store, admin, url, problem):
    merchant, _ = merchant_with_endpoints(store)
    response = client.post(f"/v1/merchants/{merchant.id}/endpoints", json={"url": url}, headers=admin)
    assert response.status_code == 400
    message = response.get_json()["error"]["message"]
    assert message.startswith("url: ") and problem in message
    with pytest.raises(ValidationError):
        validate_endpoint_url(url)


def test_endpoint_event_types_must_be_a_list_of_strings(client, store, admin):
    merchant, _ = merchant_with_endpoints(store)
    response = client.post(f"/v1/merchants/{merchant.id}/endpoints", headers=admin,
                           json={"url": "https://shop.example/h", "event_types": "mpesa.stk_push"})
    assert response.status_code == 400
    assert "event_types: Not a valid list." in response.get_json()["error"]["message"]


@pytest.mark.parametrize("event_types, accepted", [
    (["mpesa.stk_push", "payhook.endpoint.failing", "payhook.test"], True),  # exact catalog types
    (["stripe.*", "paystack.*", "flutterwave.*"], True),  # the catalog's gateway families
    (["stripe.customer.created"], True),  # a gateway type its family covers
    (["order.paid", "invoice.settled"], True),  # a merchant's own senders' types (the catalog's "*")
    (["mpesa.stk_pushed"], False), (["payhook.endpoint.gone"], False),  # Payhook's namespaces: catalog only
    (["mpesa.*"], False), (["*"], False), (["order.*"], False),  # patterns: the catalog's families only
])
def test_endpoint_event_types_are_the_catalogs(client, store, admin, event_types, accepted):
    merchant, _ = merchant_with_endpoints(store)
    response = client.post(f"/v1/merchants/{merchant.id}/endpoints", headers=admin,
                           json={"url": "https://shop.example/h", "event_types": event_types})
    if accepted:
        assert response.status_code == 201 and response.get_json()["event_types"] == event_types
        return
    assert response.status_code == 400
    assert response.get_json()["error"]["message"].startswith(f"event_types.0: {event_types[0]!r} is not ")
    assert client.get(f"/v1/merchants/{merchant.id}/endpoints", headers=admin).get_json()["data"] == []


@pytest.mark.parametrize("headers, problem", [
    ({"webhook-signature": "v1,x"}, "webhook-signature is set by Payhook"),
    ({"Webhook-Timestamp": "1"}, "Webhook-Timestamp is set by Payhook"),
    *(({name: "x"}, f"{name} is set by Payhook") for name in (
        "Connection", "Keep-Alive", "Proxy-Authorization", "TE", "Trailer", "Transfer-Encoding", "Upgrade",
        "Host", "Content-Length", "Content-Type", "User-Agent")),
    ({"X Shop": "x"}, "'X Shop' is not a valid header name"),
    ({"X-Shop:": "x"}, "'X-Shop:' is not a valid header name"),
    ({"": "x"}, "'' is not a valid header name"),
    ({"X-Shop": "a\r\nX-Evil: 1"}, "X-Shop: the value must not contain CR, LF or NUL"),
    ({"X-Shop": "a" * 1001}, "X-Shop: the value must be at most 1000 characters"),
    ({"X-Shop": "1", "x-shop": "2"}, "x-shop is given twice"),
    ({f"X-H{i}": "v" for i in range(21)}, "at most 20 headers"),
    ({f"X-H{i}": "v" * 900 for i in range(10)}, "together must be at most 8192 bytes"),
    ({"X-Shop": 5}, "Not a valid string"),
])
def test_refused_custom_headers_name_the_field(client, store, admin, headers, problem):
    merchant, [endpoint] = merchant_with_endpoints(store, "https://shop.example/h")
    for response in (
            client.post(f"/v1/merchants/{merchant.id}/endpoints", headers=admin,
                        json={"url": "https://shop.example/h", "custom_headers": headers}),
            client.patch(f"/v1/endpoints/{endpoint.id}", headers=admin, json={"custom_headers": headers})):
        assert response.status_code == 400
        message = response.get_json()["error"]["message"]
        assert message.startswith("custom_headers") and problem in message, message
    assert client.get(f"/v1/endpoints/{endpoint.id}", headers=admin).get_json()["custom_headers"] is None


def test_a_nul_in_a_header_value_is_refused_by_the_shared_rule():
    # JSON bodies with NUL are refused before any schema; the console's form reaches the rule.
    assert endpoint_headers.problems({"X-Shop": "a\0b"}) == ["X-Shop: the value must not contain CR, LF or NUL"]


def test_custom_headers_are_set_shown_replaced_and_cleared(client, store, admin):
    merchant, [endpoint] = merchant_with_endpoints(store, "https://shop.example/h")
    url = f"/v1/endpoints/{endpoint.id}"
    given = {"Authorization": "Basic c2hvcDpzZWNyZXQ=", "X-Shop-Tenant": "north"}
    assert client.patch(url, headers=admin, json={"custom_headers": given}).get_json()["custom_headers"] == given
    assert client.get(url, headers=admin).get_json()["custom_headers"] == given
    # A PATCH replaces the whole set, as it does every other field.
    assert client.patch(url, headers=admin, json={"custom_headers": {"X-Other": "1"}}).get_json()[
        "custom_headers"] == {"X-Other": "1"}
    assert client.patch(url, headers=admin, json={"custom_headers": None}).get_json()["custom_headers"] is None


def test_rotate_secret_keeps_the_old_one_signing_for_the_grace_window(client, store, admin):
    merchant, (endpoint,) = merchant_with_endpoints(store, "https://shop.example/h")
    old = endpoint.secret
    response = client.post(f"/v1/endpoints/{endpoint.id}/rotate-secret", headers=admin)
    assert response.status_code == 200
    new = response.get_json()["secret"]
    assert new.startswith("whsec_") and new != old
    with store.read() as session:
        rotated = session.get(Endpoint, endpoint.id)
    assert rotated.signing_secrets() == [new, old]
    left = rotated.previous_secret_expires_at - utcnow()
    assert dt.timedelta(hours=23, minutes=59) < left <= dt.timedelta(hours=24)
    assert rotated.signing_secrets(utcnow() + dt.timedelta(hours=25)) == [new]
    # Both secrets verify what the delivery worker signs during the window.
    headers = signing.headers(rotated.signing_secrets(), "evt_1", b"{}")
    signing.verify(old, headers, b"{}")
    signing.verify(new, headers, b"{}")


def test_rotate_secret_grace_is_configurable(client, store, admin):
    merchant, (endpoint,) = merchant_with_endpoints(store, "https://shop.example/h")
    response = client.post(f"/v1/endpoints/{endpoint.id}/rotate-secret", json={"grace_period_seconds": 3600},
                           headers=admin)
    with store.read() as session:
        rotated = session.get(Endpoint, endpoint.id)
    assert rotated.previous_secret_expires_at - utcnow() <= dt.timedelta(hours=1)
    response = client.post(f"/v1/endpoints/{endpoint.id}/rotate-secret", json={"grace_period_seconds": 0},
                           headers=admin)
    with store.read() as session:
        rotated = session.get(Endpoint, endpoint.id)
    assert rotated.signing_secrets() == [response.get_json()["secret"]]
    assert rotated.previous_secret is None

    response = client.post(f"/v1/endpoints/{endpoint.id}/rotate-secret", json={"grace_period_seconds": -1},
                           headers=admin)
    assert response.status_code == 400
    assert "grace_period_seconds:" in response.get_json()["error"]["message"]


def test_callback_urls_come_from_the_cli_helper(client, store, admin):
    merchant, _ = merchant_with_endpoints(store)
    body = client.get(f"/v1/merchants/{merchant.id}/callback-urls", headers=admin).get_json()
    assert body["merchant_id"] == merchant.id
    assert body["callback_urls"]["stk"] == f"http://127.0.0.1:8640/cb/{merchant.id}/{merchant.callback_token}/stk"


def test_unknown_ids_are_404(client, admin):
    assert client.get("/v1/merchants/mch_00", headers=admin).status_code == 404
    assert client.get("/v1/endpoints/ep_00", headers=admin).status_code == 404
    assert client.post("/v1/endpoints/ep_00/rotate-secret", headers=admin).status_code == 404


def test_endpoints_on_private_or_metadata_addresses_are_refused_at_registration(client, store):
    merchant, _ = merchant_with_endpoints(store)
    admin = api_key(store)
    for url in ("http://169.254.169.254/latest/meta-data", "http://10.0.0.1/hook", "http://[::1]:8080/x",
                "http://192.168.1.20/x"):
        response = client.post(f"/v1/merchants/{merchant.id}/endpoints", json={"url": url}, headers=admin)
        assert response.status_code == 400, url
        assert "refused" in response.get_json()["error"]["message"]
    # The test app allowlists 127.0.0.0/8; a host that does not resolve yet is checked again at delivery.
    for url in ("http://127.0.0.1:9/x", "https://not-yet-live.example/hook"):
        response = client.post(f"/v1/merchants/{merchant.id}/endpoints", json={"url": url}, headers=admin)
        assert response.status_code == 201, url
