"""Migration 0015s gives the events already stored their source: Payhook's own, the reconciler's STK results
(whose marker moves out of ``details``), and callbacks for the rest; a downgrade puts the marker back."""

from __future__ import annotations

import json

from alembic import command
from sqlalchemy import insert, select, text

from factories import merchant_with_endpoints
from payhook_shared import ids
from payhook_shared.store import Event, Store
from payhook_shared.store.migrate import alembic_config, upgrade
from payhook_shared.store.models import utcnow

EVENTS = {
    "callback": ("mpesa", "mpesa.stk_push", {"Balance": None}),
    "queried": ("mpesa", "mpesa.stk_push", {"source": "query", "query_checks": 2}),
    "b2c": ("mpesa", "mpesa.b2c", {"source": "query"}),  # not the reconciler's: a parameter named so stays
    "notice": ("payhook", "payhook.payment.unresolved", {"intent_id": "pin_1"}),
}


def test_upgrading_moves_the_query_marker_to_the_source_column_and_back(fresh_database_url):
    store = Store(fresh_database_url)
    merchant, _ = merchant_with_endpoints(store, "https://shop.example/hook")
    config = alembic_config(fresh_database_url)
    command.downgrade(config, "0015s-1")
    now = utcnow()
    try:
        with store.write() as session:
            for key, (provider, kind, details) in EVENTS.items():
                session.execute(insert(Event.__table__).values(
                    id=ids.new_id("evt"), merchant_id=merchant.id, provider=provider, type=kind, status="succeeded",
                    provider_ids={}, details=details, received_at=now, priority=2, dedupe_key=key, raw_payload="{}"))
        upgrade(fresh_database_url)
        with store.read() as session:
            after = {key: (source, details) for key, source, details in
                     session.execute(select(Event.dedupe_key, Event.source, Event.details)).all()}
        command.downgrade(config, "0015s-1")
        with store.read() as session:
            back = dict(session.execute(text("SELECT dedupe_key, details FROM events")).all())
    finally:
        store.dispose()
    assert after == {"callback": ("callback", {"Balance": None}), "queried": ("query", {"query_checks": 2}),
                     "b2c": ("callback", {"source": "query"}), "notice": ("payhook", {"intent_id": "pin_1"})}
    # Read as text on SQLite, as JSON on PostgreSQL.
    restored = {key: details if isinstance(details, dict) else json.loads(details) for key, details in back.items()}
    assert restored["queried"] == {"query_checks": 2, "source": "query"}
    assert restored["callback"] == {"Balance": None} and restored["b2c"] == {"source": "query"}
