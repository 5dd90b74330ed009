"""The store's engine: timeouts and PgBouncer-safe settings (prepared statements only when asked) on PostgreSQL, WAL on SQLite."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

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


def test_prepared_statements_when_asked(database_url):
    if not database_url.startswith("postgres"):
        pytest.skip("PostgreSQL connection options")
    prepared = Store(database_url, prepared=True)
    try:
        with prepared.engine.connect() as conn:
            assert conn.connection.dbapi_connection.prepare_threshold == 5
    finally:
        prepared.dispose()


def test_driver_connections_commit_each_statement_and_raise_sqlalchemy_errors(store):
    if store.dialect != "postgresql":
        with pytest.raises(RuntimeError):
            with store.driver():
                pass
        return
    with store.driver() as conn:
        assert conn.autocommit
        conn.execute("CREATE TEMP TABLE IF NOT EXISTS driver_probe (x int)")
    with pytest.raises(DBAPIError):
        with store.driver() as conn:
            conn.execute("SELECT 1 / 0")
    with store.engine.connect() as conn:
        # The pooled connection goes back to the pool out of autocommit, so sessions still get transactions.
        assert not conn.connection.dbapi_connection.autocommit


def test_url_options_win(database_url):
    if not database_url.startswith("postgres"):
        pytest.skip("PostgreSQL connection options")
    custom = Store(database_url + "?options=-c%20statement_timeout%3D1234")
    try:
        with custom.engine.connect() as conn:
            assert conn.execute(text("SHOW statement_timeout")).scalar() == "1234ms"
    finally:
        custom.dispose()
