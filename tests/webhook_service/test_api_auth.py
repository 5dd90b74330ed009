"""API keys: stored hashed, shown once, checked on every /v1 route, scoped to one merchant."""

from __future__ import annotations

import hashlib
import re

import pytest
from sqlalchemy import select

from factories import api_key, callback_url, make_source, merchant_with_endpoints
from payhook_shared import ids
from payhook_shared.store import ApiKey, Delivery, Event, PaymentIntent, QuarantinedCallback
from payhook_shared.store.models import utcnow
from payhook_webhook import auth

FORBIDDEN_WORDS = ("mpesa", "safaricom", "exe", "exec", "cmd", "sql", "query")


def test_keys_are_hex_and_stored_only_as_their_sha256(store):
    row, key = auth.create_api_key(store, label="ops")
    assert re.fullmatch(r"phk_[0-9a-f]{64}", key)
    assert not any(word in key for word in FORBIDDEN_WORDS)
    with store.read() as session:
        stored = session.get(ApiKey, row.id)
    assert stored.key_hash == hashlib.sha256(key.encode()).hexdigest()
    assert key not in (stored.key_hash, stored.label, stored.id)
    assert stored.merchant_id is None and stored.label == "ops"


@pytest.mark.parametrize("header, problem", [
    (None, "missing Authorization header"),
    ("Basic dXNlcjpwYXNz", "must be 'Bearer <api key>'"),
    ("Bearer", "must be 'Bearer <api key>'"),
    ("Bearer phk_" + "0" * 64, "invalid API key"),
    ("Bearer not-a-key", "invalid API key"),
])
def test_missing_or_invalid_keys_get_401_naming_the_problem(client, header, problem):
    headers = {"Authorization": header} if header else {}
    response = client.get("/v1/merchants", headers=headers)
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "unauthorized"
    assert problem in response.get_json()["error"]["message"]
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_revoked_key_is_refused(client, store):
    headers = api_key(store)
    with store.write() as session:
        session.execute(select(ApiKey)).scalar_one().revoked_at = utcnow()
    response = client.get("/v1/merchants", headers=headers)
    assert response.status_code == 401
    assert response.get_json()["error"]["message"] == "API key revoked"


def test_merchant_key_sees_only_its_own_merchant(client, store):
    mine, _ = merchant_with_endpoints(store, "https://mine.example/hook")
    theirs, their_endpoints = merchant_with_endpoints(store, "https://theirs.example/hook")
    headers = api_key(store, mine.id)

    assert client.get(f"/v1/merchants/{mine.id}", headers=headers).status_code == 200
    for path in (f"/v1/merchants/{theirs.id}", f"/v1/merchants/{theirs.id}/endpoints",
                 f"/v1/merchants/{theirs.id}/callback-urls", f"/v1/endpoints/{their_endpoints[0].id}"):
        response = client.get(path, headers=headers)
        assert response.status_code == 404, path
    listed = client.get("/v1/merchants", headers=headers).get_json()["data"]
    assert [m["id"] for m in listed] == [mine.id]


def test_merchant_key_cannot_create_merchants_or_enable_itself(client, store):
    merchant, _ = merchant_with_endpoints(store)
    headers = api_key(store, merchant.id)
    response = client.post("/v1/merchants", json={"name": "Other"}, headers=headers)
    assert response.status_code == 403
    assert "admin API key" in response.get_json()["error"]["message"]
    response = client.patch(f"/v1/merchants/{merchant.id}", json={"enabled": False}, headers=headers)
    assert response.status_code == 403


def test_disabled_merchants_keys_are_refused(client, store):
    merchant, _ = merchant_with_endpoints(store)
    merchant_headers = api_key(store, merchant.id)
    admin = api_key(store)
    assert client.patch(f"/v1/merchants/{merchant.id}", json={"enabled": False},
                        headers=admin).get_json()["enabled"] is False
    response = client.get(f"/v1/merchants/{merchant.id}", headers=merchant_headers)
    assert response.status_code == 403
    assert response.get_json()["error"]["message"] == "merchant disabled"


def test_cli_prints_a_working_key_once(webhook_app, client, store):
    merchant, _ = merchant_with_endpoints(store)
    runner = webhook_app.test_cli_runner()
    result = runner.invoke(args=["create-api-key", "--merchant", merchant.id, "--label", "shop backend"])
    assert result.exit_code == 0, result.output
    key = result.stdout.strip()
    assert re.fullmatch(r"phk_[0-9a-f]{64}", key)
    response = client.get(f"/v1/merchants/{merchant.id}", headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 200
    with store.read() as session:
        row = session.execute(select(ApiKey)).scalar_one()
    assert (row.merchant_id, row.label) == (merchant.id, "shop backend")

    admin = runner.invoke(args=["create-api-key"])
    assert admin.exit_code == 0
    assert client.get("/v1/merchants", headers={"Authorization": f"Bearer {admin.stdout.strip()}"}).status_code == 200


def test_cli_refuses_an_unknown_merchant(webhook_app, store):
    result = webhook_app.test_cli_runner().invoke(args=["create-api-key", "--merchant", "mch_00"])
    assert result.exit_code != 0
    assert "no merchant mch_00" in result.output
    with store.read() as session:
        assert session.execute(select(ApiKey)).first() is None


# Bodies that pass validation, so every route reaches its lookup of the id.
VALID_BODIES = {
    ("PATCH", "/v1/merchants/<merchant_id>"): {"name": "Renamed"},
    ("POST", "/v1/merchants/<merchant_id>/endpoints"): {"url": "http://127.0.0.1:9/hook"},
    ("POST", "/v1/merchants/<merchant_id>/sources"): {"provider": "flutterwave"},
    ("PATCH", "/v1/endpoints/<endpoint_id>"): {"description": "renamed"},
    ("POST", "/v1/endpoints/<endpoint_id>/recover"): {"since": "2020-01-01T00:00:00Z"},
    ("PATCH", "/v1/sources/<source_id>"): {"description": "renamed"},
    ("POST", "/v1/endpoints/<endpoint_id>/test"): {"type": "mpesa.stk_push"},
    ("POST", "/v1/endpoints/<endpoint_id>/replay"): {"since": "2020-01-01T00:00:00Z"},
}


def _their_rows(store, client):
    theirs, [endpoint] = merchant_with_endpoints(store, "https://theirs.example/hook")
    source, _ = make_source(store, theirs, "flutterwave", "s" * 32)
    event_id, delivery_id, intent_id = ids.new_id("evt"), ids.new_id("dlv"), ids.new_id("pin")
    with store.write() as session:
        session.add(PaymentIntent(id=intent_id, merchant_id=theirs.id, checkout_request_id="ws_CO_theirs",
                                  source="registered"))
        session.add(Event(id=event_id, merchant_id=theirs.id, provider="api", type="order.paid", status="succeeded",
                          priority=2, dedupe_key="api:theirs", raw_payload="{}"))
        session.add(Delivery(id=delivery_id, event_id=event_id, endpoint_id=endpoint.id, merchant_id=theirs.id,
                             priority=2, state="dead", dead_at=utcnow(), last_category="server_error"))
    their_key = api_key(store, theirs.id)
    with store.read() as session:
        key_id = session.scalar(select(ApiKey.id).where(ApiKey.merchant_id == theirs.id))
    replay = client.post(f"/v1/endpoints/{endpoint.id}/replay", json={"since": "2020-01-01T00:00:00Z"},
                         headers=their_key)
    assert replay.status_code == 202, replay.get_data(as_text=True)
    assert client.post(callback_url(theirs, "stk"), json={"Body": {}}).status_code == 400
    with store.read() as session:
        quarantined_id = session.scalar(select(QuarantinedCallback.id))
    return {"merchant_id": theirs.id, "endpoint_id": endpoint.id, "source_id": source.id,
            "delivery_id": delivery_id, "key_id": key_id, "event_id": event_id,
            "replay_id": replay.get_json()["id"], "quarantine_id": quarantined_id, "level": "urgent",
            "intent_id": intent_id}


def test_another_merchants_ids_answer_exactly_as_unknown_ids(webhook_app, client, store):
    mine, _ = merchant_with_endpoints(store, "https://mine.example/hook")
    headers = api_key(store, mine.id)
    theirs = _their_rows(store, client)
    unknown = {name: value[:value.index("_") + 1] + "0" * (len(value) - value.index("_") - 1) if "_" in value
               else value for name, value in theirs.items()}
    checked = 0
    for rule in webhook_app.url_map.iter_rules():
        if not rule.rule.startswith(("/v1/", "/test/")) or not rule.arguments:
            continue
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            answers = []
            for values in (theirs, unknown):
                path = rule.rule
                for name in rule.arguments:
                    path = path.replace(f"<{name}>", values[name])
                body = VALID_BODIES.get((method, rule.rule), None if method == "GET" else {})
                response = client.open(path, method=method, json=body, headers=headers)
                text = response.get_data(as_text=True)
                for name in rule.arguments:
                    text = text.replace(values[name], f"<{name}>")
                answers.append((response.status_code, text))
            assert answers[0] == answers[1], (method, rule.rule)
            # Admin-only routes refuse a merchant key before looking at the id.
            admin_only = rule.rule.startswith(("/test/", "/v1/api-keys/"))
            assert answers[0][0] == (403 if admin_only else 404), (method, rule.rule, answers[0])
            checked += 1
    assert checked >= 19  # every method of every id-taking route under /v1 and /test
