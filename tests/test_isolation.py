"""The suite's own promise: whatever a test leaves in its database, the next test does not see.

Each pair runs in this order (pytest keeps a module's order): the first leaves something behind, the
second looks for it. On PostgreSQL both use the shared database: the first pair checks how it is emptied,
the second how it is rebuilt after a test changed its schema.
"""

from __future__ import annotations

import pytest
import sqlalchemy
from sqlalchemy import func, select, text

from factories import merchant_with_endpoints
from payhook_shared.store import Merchant
from payhook_shared.store.db import normalise_url

LOCK_KEY = 4_242_420
_left_open = []  # connections a careless test would leave open; kept so nothing closes them before the reset


def _postgres_only(store) -> None:
    if store.dialect != "postgresql":
        pytest.skip("advisory locks, sequences and functions are PostgreSQL's")


def test_leaves_rows_a_used_sequence_and_a_held_advisory_lock(store, database_url):
    merchant_with_endpoints(store, "http://127.0.0.1:9/a")
    if store.dialect != "postgresql":
        return
    conn = sqlalchemy.create_engine(normalise_url(database_url)).connect()
    conn.execute(text("SELECT nextval('delivery_attempts_id_seq')"))
    conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": LOCK_KEY})
    conn.commit()
    _left_open.append(conn)


def test_finds_no_rows_a_fresh_sequence_and_a_free_lock(store, database_url):
    with store.read() as session:
        assert session.scalar(select(func.count()).select_from(Merchant)) == 0
    if store.dialect != "postgresql":
        return
    with store.engine.connect() as conn:
        assert conn.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": LOCK_KEY}).scalar()
        assert conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": LOCK_KEY}).scalar()
        assert conn.execute(text("SELECT nextval('delivery_attempts_id_seq')")).scalar() == 1
        conn.rollback()


def test_changes_the_schema(store):
    _postgres_only(store)
    with store.engine.begin() as conn:
        conn.execute(text("CREATE TABLE stray (x int)"))
        conn.execute(text("CREATE OR REPLACE FUNCTION payhook_merchant_changed() RETURNS trigger AS "
                          "'BEGIN RETURN NEW; END' LANGUAGE plpgsql"))


def test_finds_the_migrated_schema(store):
    _postgres_only(store)
    with store.engine.connect() as conn:
        assert conn.execute(text("SELECT to_regclass('stray')")).scalar() is None
        definition = conn.execute(text("SELECT pg_get_functiondef('payhook_merchant_changed'::regproc)")).scalar()
        assert "config_version" in definition
