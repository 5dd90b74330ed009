"""Merchant profiles cached by the webhook-service are never used stale.

On PostgreSQL each process keeps merchant profiles; triggers bump the merchant's
``config_version`` on any change ingest cares about, and the write refuses a
stale version, so a change made anywhere — another process, the console, a
script on the database — applies to the very next callback. On SQLite the
profile is read for every callback, and the same tests hold.
"""

from __future__ import annotations

import copy
import uuid

from sqlalchemy import select

from factories import fixture_json, merchant_with_endpoints, set_merchant_settings, stk_url
from payhook_shared import ids, signing
from payhook_shared.priority import Priority
from payhook_shared.store import Delivery, Endpoint, Event, Merchant


def _post(client, merchant) -> str:
    payload = copy.deepcopy(fixture_json("mpesa/stk_success.json"))
    checkout = f"ws_CO_{uuid.uuid4().hex}"
    payload["Body"]["stkCallback"]["CheckoutRequestID"] = checkout
    response = client.post(stk_url(merchant), json=payload)
    assert response.status_code == 200, response.get_json()
    return checkout


def _event(store, checkout: str) -> Event:
    with store.read() as session:
        return session.scalars(select(Event).where(Event.dedupe_key.contains(checkout))).one()


def _endpoints_delivered(store, checkout: str) -> set[str]:
    event = _event(store, checkout)
    with store.read() as session:
        return set(session.scalars(select(Delivery.endpoint_id).where(Delivery.event_id == event.id)))


def test_an_endpoint_added_behind_the_cache_gets_the_next_event(client, store):
    merchant, (first,) = merchant_with_endpoints(store, "http://127.0.0.1:9/a")
    assert _endpoints_delivered(store, _post(client, merchant)) == {first.id}
    with store.write() as session:
        second = Endpoint(id=ids.new_id("ep"), merchant_id=merchant.id, url="http://127.0.0.1:9/b",
                          secret=signing.generate_secret())
        session.add(second)
    assert _endpoints_delivered(store, _post(client, merchant)) == {first.id, second.id}


def test_an_endpoint_disabled_behind_the_cache_gets_nothing_more(client, store):
    merchant, (kept, disabled) = merchant_with_endpoints(store, "http://127.0.0.1:9/a", "http://127.0.0.1:9/b")
    assert _endpoints_delivered(store, _post(client, merchant)) == {kept.id, disabled.id}
    with store.write() as session:
        session.get(Endpoint, disabled.id).enabled = False
    assert _endpoints_delivered(store, _post(client, merchant)) == {kept.id}


def test_a_settings_change_behind_the_cache_applies_to_the_next_callback(client, store):
    merchant, _ = merchant_with_endpoints(store, "http://127.0.0.1:9/a")
    assert _event(store, _post(client, merchant)).priority == int(Priority.NORMAL)
    set_merchant_settings(store, merchant, {"priority_rules": [{"event_type": "mpesa.stk_push",
                                                                "priority": "urgent"}]})
    assert _event(store, _post(client, merchant)).priority == int(Priority.URGENT)


def test_a_rotated_callback_token_refuses_the_old_url_at_once(client, store):
    merchant, _ = merchant_with_endpoints(store, "http://127.0.0.1:9/a")
    _post(client, merchant)
    with store.write() as session:
        session.get(Merchant, merchant.id).callback_token = ids.new_token()
    payload = fixture_json("mpesa/stk_success.json")
    response = client.post(stk_url(merchant), json=payload)
    # The cached profile still holds the old token, but the write is refused and the fresh read says 404.
    assert response.status_code == 404
    with store.read() as session:
        assert session.scalar(select(Event.id).where(Event.dedupe_key.contains(
            payload["Body"]["stkCallback"]["CheckoutRequestID"]))) is None
