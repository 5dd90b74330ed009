"""Per-merchant priority overrides: tried in order before the default rules."""

from __future__ import annotations

import pytest

from factories import api_key, fixture_bytes, merchant_with_endpoints, stk_url
from payhook_shared.events import NormalisedEvent
from payhook_shared.priority import Priority
from payhook_webhook.priority_rules import classify
from support import queued_deliveries


def event(type_="shop.payment", status="succeeded", amount_minor=None) -> NormalisedEvent:
    return NormalisedEvent(provider="api", type=type_, status=status, dedupe_key="k", amount_minor=amount_minor)


RULES = [
    {"event_type": "mpesa.stk_push", "status": "failed", "priority": "normal"},
    {"min_amount_minor": 5000_00, "priority": "urgent"},
    {"event_type": "shop.refund", "priority": "low"},
]


@pytest.mark.parametrize("evt, expected", [
    (event("mpesa.stk_push", "failed"), Priority.NORMAL),           # first rule beats the URGENT default
    (event("mpesa.stk_push", "succeeded", 5000_00), Priority.URGENT),
    (event("shop.payment", "succeeded", 4999_99), Priority.NORMAL),  # below the threshold: defaults
    (event("shop.payment", "succeeded"), Priority.NORMAL),           # no amount never meets a threshold
    (event("shop.refund", "failed"), Priority.LOW),
    (event("shop.payment", "failed"), Priority.URGENT),              # no rule matches: defaults
])
def test_first_matching_rule_wins_then_defaults(evt, expected):
    assert classify(evt, rules=RULES) == expected


def test_without_rules_the_defaults_apply():
    assert classify(event(status="unknown")) == Priority.URGENT
    assert classify(event(amount_minor=100_000_00)) == Priority.HIGH
    assert classify(event(amount_minor=100_000_00), rules=[]) == Priority.HIGH
    assert classify(event(), rules=[{"priority": "low"}]) == Priority.LOW


def test_malformed_stored_rules_are_skipped_not_fatal():
    rules = [{"status": "succeeded"}, {"min_amount_minor": "x", "priority": "low"}, {"priority": "asap"},
             {"priority": "high"}]
    assert classify(event(amount_minor=5), rules=rules) == Priority.HIGH


def test_stk_callbacks_honour_the_merchants_rules(client, store, redis_client):
    merchant, _ = merchant_with_endpoints(store, "https://shop.example/a")
    response = client.patch(f"/v1/merchants/{merchant.id}", headers=api_key(store, merchant.id),
                            json={"priority_rules": [{"event_type": "mpesa.stk_push", "priority": "high"}]})
    assert response.status_code == 200
    client.post(stk_url(merchant), data=fixture_bytes("mpesa/stk_success.json"), content_type="application/json")
    assert len(queued_deliveries(redis_client, "delivery.high")) == 1
    assert redis_client.llen("dramatiq:delivery.normal") == 0


def test_api_events_honour_the_merchants_rules(client, store, redis_client):
    merchant, _ = merchant_with_endpoints(store, "https://shop.example/a")
    headers = api_key(store, merchant.id)
    client.patch(f"/v1/merchants/{merchant.id}", headers=headers,
                 json={"priority_rules": [{"status": "failed", "priority": "low"}]})
    response = client.post("/v1/events", headers=headers, json={
        "type": "shop.payment", "idempotency_key": "1", "data": {"status": "failed"}})
    assert response.status_code == 201
    assert len(queued_deliveries(redis_client, "delivery.low")) == 1
