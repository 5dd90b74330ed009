"""Migration 0011s removes the raw sign-in links that emails queued before it still held.

The test downgrades and upgrades, so it takes a database of its own (``fresh_database_url``).
"""

from __future__ import annotations

from alembic import command
from sqlalchemy import select

from payhook_shared import ids
from payhook_shared.store import Email, Store
from payhook_shared.store.migrate import alembic_config, upgrade

TOKEN = "p2Kc1V3G9p4J3QW6XkG1iYfQ0n7w3RZ8zH2y5tBvE1A"


def test_upgrading_blanks_the_links_of_sign_in_emails_queued_before(fresh_database_url):
    command.downgrade(alembic_config(fresh_database_url), "0011s-1")
    store = Store(fresh_database_url)
    try:
        with store.write() as session:
            session.add(Email(id=ids.new_id("eml"), template="sign_in_link", recipients=["ops@payhook.test"],
                              priority=0, dedupe_key="sign_in_link:sil_old",
                              context={"links": [{"label": "Operator: every merchant",
                                                  "url": f"https://console.payhook.test/console/sign-in/{TOKEN}"}],
                                       "expires_minutes": 15}))
            session.add(Email(id=ids.new_id("eml"), template="payment_received", recipients=["a@shop.test"],
                              priority=2, dedupe_key="payment_received:evt_x", context={"amount_minor": 100}))
        upgrade(fresh_database_url)
        with store.read() as session:
            contexts = dict(session.execute(select(Email.template, Email.context)).all())
    finally:
        store.dispose()
    assert contexts == {"sign_in_link": {"links": [], "expires_minutes": 15},
                        "payment_received": {"amount_minor": 100}}
