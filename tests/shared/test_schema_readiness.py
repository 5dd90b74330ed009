"""Readiness waits for the schema this code expects: a pod started before the migration Job finished
is not Ready (so a rolling update keeps the old pods), on a real database one revision behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from alembic import command
from alembic.script import ScriptDirectory

from payhook_shared.broker import create_broker
from payhook_shared.messages import DeliverWebhook, SendEmail
from payhook_shared.priority import Priority
from payhook_shared.store import Store
from payhook_shared.store.migrate import alembic_config, upgrade
from payhook_shared.store.schema import SchemaBehind, check_schema, code_revisions
from support import free_port, wait_until


@pytest.fixture
def behind(fresh_database_url):
    """The test database, migrated to one revision before this code's head."""
    command.downgrade(alembic_config(fresh_database_url), "-1")
    return fresh_database_url


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


def test_code_revisions_read_from_the_scripts_are_alembics():
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    assert code_revisions() == (frozenset(r.revision for r in script.walk_revisions()),
                                frozenset(script.get_heads()))


def test_serving_processes_do_not_load_alembic(tmp_path, redis_url):
    """Only the migrate command needs Alembic (and Mako, Pygments): 12 MB a serving process does without."""
    code = f"""
import sys
from payhook_webhook.app import create_app
import payhook_delivery.__main__, payhook_delivery.app, payhook_mail.__main__, payhook_mail.app
create_app({{"database_url": "sqlite:///{tmp_path}/store.db", "redis_url": "{redis_url}", "log_format": "text"}})
print(sorted(m for m in ("alembic", "mako", "pygments") if m in sys.modules))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"


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
        from payhook_delivery.app import setup
        from payhook_delivery.settings import Settings
        extra = {}
    else:
        from payhook_mail.app import setup
        from payhook_mail.settings import Settings
        extra = {"outbox_dir": str(tmp_path / "outbox")}
    port = free_port()
    worker = setup(Settings.from_env({}, database_url=behind, redis_url=redis_url, health_port=port, **extra))
    rt = worker.runtime.get()
    try:
        rt.serve_health()
        status, body = _get(f"http://127.0.0.1:{port}/health/ready")
        assert status == 503 and body["checks"]["schema"] == "SchemaBehind", body
        upgrade(behind)
        status, body = _get(f"http://127.0.0.1:{port}/health/ready")
        assert status == 200, body
    finally:
        rt.close()
        worker.broker.close()


def _start(script: str, database_url: str, redis_url: str, health_port: int, tmp_path) -> subprocess.Popen:
    env = {**os.environ, "DATABASE_URL": database_url, "REDIS_URL": redis_url, "HEALTH_PORT": str(health_port),
           "OUTBOX_DIR": str(tmp_path / "outbox"), "LOG_FORMAT": "text", "SWEEP_INTERVAL": "0.2"}
    log = (tmp_path / f"{script}.log").open("wb")
    return subprocess.Popen([str(Path(sys.executable).parent / script)], env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True, cwd=tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("script", ["payhook-delivery-worker", "payhook-mail-worker"])
def test_workers_consume_only_once_migrated(behind, redis_url, redis_client, script, tmp_path):
    """The real worker, started on a schema one revision behind, serves /health (not Ready) and leaves its
    queue alone; once the migration has run, it consumes."""
    broker = create_broker(redis_url)
    if script == "payhook-delivery-worker":
        message = DeliverWebhook(delivery_ids=("dl_none",), priority=Priority.NORMAL)
    else:
        message = SendEmail(email_id="em_none", merchant_id="m_none", priority=Priority.NORMAL)
    broker.enqueue(message.to_dramatiq())
    queue = f"dramatiq:{message.queue_name}"
    assert redis_client.llen(queue) == 1
    port = free_port()
    proc = _start(script, behind, redis_url, port, tmp_path)
    try:
        wait_until(lambda: _get_or_none(f"http://127.0.0.1:{port}/health") == 200, timeout=60, what="/health")
        status, body = _get(f"http://127.0.0.1:{port}/health/ready")
        assert status == 503 and body["checks"]["schema"] == "SchemaBehind", body
        time.sleep(2)
        assert redis_client.llen(queue) == 1, "consumed before the schema was migrated"
        upgrade(behind)
        wait_until(lambda: redis_client.llen(queue) == 0, timeout=60, what="the message consumed")
        wait_until(lambda: _get_or_none(f"http://127.0.0.1:{port}/health/ready") == 200, timeout=60,
                   what="the worker ready")
    finally:
        _stop(proc)
        broker.close()


@pytest.mark.parametrize("script", ["payhook-delivery-worker", "payhook-mail-worker"])
def test_a_waiting_worker_stops_on_sigterm(behind, redis_url, script, tmp_path):
    port = free_port()
    proc = _start(script, behind, redis_url, port, tmp_path)
    try:
        wait_until(lambda: _get_or_none(f"http://127.0.0.1:{port}/health") == 200, timeout=60, what="/health")
    finally:
        _stop(proc)


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM to the main process only, as the kubelet sends it; it must exit cleanly."""
    proc.send_signal(signal.SIGTERM)
    try:
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


def _get_or_none(url: str) -> int | None:
    try:
        return _get(url)[0]
    except OSError:
        return None
