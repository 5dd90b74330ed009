"""The store's engine: timeouts and PgBouncer-safe settings on PostgreSQL, WAL on SQLite."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from payhook_shared.store import Store


def test_connection_settings(store):
    with store.engine.connect() as conn:
        if store.dialect == "sqlite":
            assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
        else:
            assert conn.execute(text("SHOW statement_timeout")).scalar() == "15s"
            assert conn.execute(text("SHOW lock_timeout")).scalar() == "5s"
            assert conn.connection.dbapi_connection.prepare_threshold is None


def test_url_options_win(database_url):
    if not database_url.startswith("postgres"):
        pytest.skip("PostgreSQL connection options")
    custom = Store(database_url + "?options=-c%20statement_timeout%3D1234")
    try:
        with custom.engine.connect() as conn:
            assert conn.execute(text("SHOW statement_timeout")).scalar() == "1234ms"
    finally:
        custom.dispose()
