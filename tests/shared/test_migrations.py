"""The migrations build exactly the schema the models describe, on every database."""

from pathlib import Path

import pytest
import sqlalchemy
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from payhook_shared.store.db import normalise_url
from payhook_shared.store.migrate import alembic_config, upgrade
from payhook_shared.store.models import Base


# SQLite cannot reflect expression indexes; the PostgreSQL-only phone index is compared on PostgreSQL.
@pytest.mark.filterwarnings("ignore:autogenerate skipping metadata-specified expression-based index:UserWarning")
def test_migrations_match_models(store):
    with store.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []


def _schema(engine) -> dict:
    """Every table's columns, keys and indexes (and functions, on PostgreSQL): what an upgrade must reproduce."""
    inspector = sqlalchemy.inspect(engine)
    schema: dict = {}
    for table in sorted(t for t in inspector.get_table_names() if t != "alembic_version"):
        schema[table] = {
            "columns": [(c["name"], str(c["type"]), c["nullable"], str(c.get("default")))
                        for c in inspector.get_columns(table)],
            "primary_key": inspector.get_pk_constraint(table)["constrained_columns"],
            "foreign_keys": sorted((tuple(f["constrained_columns"]), f["referred_table"],
                                    f.get("options", {}).get("ondelete")) for f in inspector.get_foreign_keys(table)),
            "indexes": sorted((i["name"], tuple(str(c) for c in i["column_names"]), bool(i["unique"]),
                               sorted((k, str(v)) for k, v in i.get("dialect_options", {}).items()))
                              for i in inspector.get_indexes(table)),
            "unique": sorted((u["name"] or "", tuple(u["column_names"]))
                             for u in inspector.get_unique_constraints(table)),
        }
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            schema["functions"] = sorted(conn.exec_driver_sql(
                "SELECT proname, pg_get_functiondef(p.oid) FROM pg_proc p "
                "JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'public'").all())
    return schema


def _database(database_url: str, tmp_path, name: str) -> str:
    """A second, empty database beside ``database_url`` (the fixture's one is already migrated)."""
    if database_url.startswith("sqlite"):
        return f"sqlite:///{tmp_path / name}.db"
    admin = sqlalchemy.create_engine(normalise_url(database_url), isolation_level="AUTOCOMMIT")
    url = sqlalchemy.make_url(normalise_url(database_url))
    db = f"{url.database}_{name}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{db}"')
    admin.dispose()
    return url.set(database=db).render_as_string(hide_password=False)


def _drop(url: str, admin_url: str) -> None:
    if url.startswith("sqlite"):
        return
    admin = sqlalchemy.create_engine(normalise_url(admin_url), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{sqlalchemy.make_url(url).database}" WITH (FORCE)')
    admin.dispose()


def test_file_names_sort_in_apply_order():
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    applied = [rev.module.__file__ for rev in reversed(list(script.walk_revisions()))]
    assert [Path(f).name for f in applied] == sorted(Path(f).name for f in applied)


@pytest.mark.parametrize("start", ["0003b", "0004s", "0009"])
def test_upgraded_database_has_the_fresh_schema(database_url, tmp_path, start):
    """A database left at an older revision and upgraded matches one migrated from nothing."""
    upgraded = _database(database_url, tmp_path, f"from_{start}")
    try:
        upgrade(upgraded, start)
        upgrade(upgraded)
        fresh = sqlalchemy.create_engine(normalise_url(database_url))
        old = sqlalchemy.create_engine(normalise_url(upgraded))
        try:
            assert _schema(old) == _schema(fresh)
        finally:
            fresh.dispose()
            old.dispose()
    finally:
        _drop(upgraded, database_url)
