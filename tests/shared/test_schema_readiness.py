"""Readiness waits for the schema this code expects: a pod started before the migration Job finished
is not Ready (so a rolling update keeps the old pods), on a real database one revision behind."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest
from alembic import command

from payhook_shared.store import Store
from payhook_shared.store.migrate import alembic_config, upgrade
from payhook_shared.store.schema import SchemaBehind, check_schema, code_revisions
from support import free_port


@pytest.fixture
def behind(database_url):
    """The test database, migrated to one revision before this code's head."""
    command.downgrade(alembic_config(database_url), "-1")
    return database_url


def _get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_check_schema_knows_behind_at_head_and_ahead(behind):
    store = Store(behind)
    try:
        with pytest.raises(SchemaBehind):
            check_schema(store)
        upgrade(behind)
        check_schema(store)
        # A newer release migrated past this code's head: additive migrations, the old pods stay ready.
        with store.engine.begin() as conn:
            conn.exec_driver_sql("UPDATE alembic_version SET version_num = 'from-a-newer-release'")
        check_schema(store)
        with store.engine.begin() as conn:
            conn.exec_driver_sql("DELETE FROM alembic_version")
        with pytest.raises(SchemaBehind):
            check_schema(store)
    finally:
        store.dispose()


def test_code_head_is_the_newest_migration():
    known, heads = code_revisions()
    assert len(heads) == 1 and heads <= known


def test_webhook_service_is_not_ready_until_migrated(behind, redis_url):
    from payhook_webhook.app import create_app

    app = create_app({"database_url": behind, "redis_url": redis_url, "log_format": "text"})
    try:
        client = app.test_client()
        response = client.get("/health/ready")
        assert response.status_code == 503
        assert response.get_json()["checks"] == {"database": "ok", "schema": "SchemaBehind", "redis": "ok"}
        upgrade(behind)
        response = client.get("/health/ready")
        assert response.status_code == 200, response.get_json()
    finally:
        app.extensions["payhook.store"].dispose()


@pytest.mark.parametrize("service", ["delivery", "mail"])
def test_workers_are_not_ready_until_migrated(behind, redis_url, service, tmp_path):
    if service == "delivery":
        from payhook_delivery import runtime
        from payhook_delivery.actors import broker
        from payhook_delivery.settings import Settings
        extra = {}
    else:
        from payhook_mail import runtime
        from payhook_mail.actors import broker
        from payhook_mail.settings import Settings
        extra = {"outbox_dir": str(tmp_path / "outbox")}
    port = free_port()
    rt = runtime.Runtime.build(Settings.from_env({}, database_url=behind, redis_url=redis_url, health_port=port,
                                                 **extra), broker)
    try:
        rt.serve_health()
        status, body = _get(f"http://127.0.0.1:{port}/health/ready")
        assert status == 503 and body["checks"]["schema"] == "SchemaBehind", body
        upgrade(behind)
        status, body = _get(f"http://127.0.0.1:{port}/health/ready")
        assert status == 200, body
    finally:
        rt.close()
