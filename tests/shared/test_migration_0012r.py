"""Migration 0012r fills the provider's key of the events and the endpoint of the attempts already stored."""

from __future__ import annotations

from alembic import command
from sqlalchemy import insert, select

from factories import merchant_with_endpoints
from payhook_shared import ids
from payhook_shared.provider_keys import provider_key
from payhook_shared.store import Delivery, DeliveryAttempt, Event, Store
from payhook_shared.store.migrate import alembic_config, upgrade
from payhook_shared.store.models import utcnow

PROVIDER_IDS = {
    "stk": {"MerchantRequestID": "29115-1", "CheckoutRequestID": "ws_CO_1"},
    "c2b": {"TransID": "RKTQDM7W6S", "BusinessShortCode": "600638"},
    "b2c": {"OriginatorConversationID": "10571-1", "ConversationID": "AG_2019", "TransactionID": "NLJ41HAY6Q"},
    "stripe": {"event_id": "evt_1Stripe", "livemode": False, "object_id": "pi_1"},
    "paystack": {"id": 302961},
    "none": {},
}


def test_upgrading_fills_provider_keys_and_attempt_endpoints(fresh_database_url):
    store = Store(fresh_database_url)
    merchant, [endpoint] = merchant_with_endpoints(store, "https://shop.example/hook")
    command.downgrade(alembic_config(fresh_database_url), "0012r-1")
    now = utcnow()
    try:
        with store.write() as session:
            for kind, provider_ids in PROVIDER_IDS.items():
                event_id = ids.new_id("evt")
                session.execute(insert(Event.__table__).values(
                    id=event_id, merchant_id=merchant.id, provider="mpesa", type=kind, status="succeeded",
                    provider_ids=provider_ids, details={}, received_at=now, priority=2, dedupe_key=kind,
                    raw_payload="{}"))
                delivery_id = ids.new_id("dlv")
                session.execute(insert(Delivery.__table__).values(
                    id=delivery_id, event_id=event_id, endpoint_id=endpoint.id, merchant_id=merchant.id,
                    state="done", priority=2, attempts=1, next_attempt_at=now, round_start=0, created_at=now,
                    updated_at=now))
                session.execute(insert(DeliveryAttempt.__table__).values(
                    delivery_id=delivery_id, number=1, started_at=now, duration_ms=5, status_code=200,
                    category="success"))
        upgrade(fresh_database_url)
        with store.read() as session:
            keys = dict(session.execute(select(Event.type, Event.provider_key)).all())
            endpoints = set(session.scalars(select(DeliveryAttempt.endpoint_id)))
    finally:
        store.dispose()
    assert keys == {kind: provider_key(provider_ids) for kind, provider_ids in PROVIDER_IDS.items()}
    assert keys["stk"] == "ws_CO_1" and keys["c2b"] == "RKTQDM7W6S" and keys["b2c"] == "AG_2019"
    assert keys["stripe"] == "evt_1Stripe" and keys["paystack"] == "302961" and keys["none"] is None
    assert endpoints == {endpoint.id}
