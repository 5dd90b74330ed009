"""Session-wide real peers and per-test stores.

The suite starts its own redis-server on a free port, and uses only services it
started, or a PostgreSQL named by TEST_DATABASE_URL.
"""

from __future__ import annotations

import os
import shutil
import uuid
from email import message_from_bytes
from pathlib import Path

import pytest
import redis as redis_lib
import sqlalchemy
from aiosmtpd.controller import Controller

from support import Receiver, RedisServer, environ_database_url, free_port

REDIS_PORT = free_port()
# Anything that reads the environment (a CLI, a subprocess) reaches the session's Redis, never the machine's.
os.environ["REDIS_URL"] = f"redis://127.0.0.1:{REDIS_PORT}/0"
os.environ.setdefault("LOG_FORMAT", "text")

from payhook_shared.store import Store  # noqa: E402
from payhook_shared.store.db import normalise_url  # noqa: E402
from payhook_shared.store.migrate import upgrade  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    """Our own redis-server for the whole session."""
    server = RedisServer(REDIS_PORT, tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server):
    """The session Redis, emptied for this test."""
    client = redis_lib.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    return redis_server.url


@pytest.fixture
def redis_client(redis_url):
    client = redis_lib.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory) -> Path:
    """A migrated SQLite file, copied for each test instead of migrating again."""
    path = tmp_path_factory.mktemp("sqlite") / "template.db"
    upgrade(f"sqlite:///{path}")
    return path


class _Postgres:
    """Creates a migrated template database once, then one database per test from it."""

    def __init__(self, url: str):
        self.admin_url = normalise_url(url)
        self.engine = sqlalchemy.create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        self.template = f"payhook_tpl_{uuid.uuid4().hex[:10]}"
        self._execute(f'CREATE DATABASE "{self.template}"')
        upgrade(self.url_for(self.template))
        self._drop_connections(self.template)

    def url_for(self, name: str) -> str:
        return sqlalchemy.make_url(self.admin_url).set(database=name).render_as_string(hide_password=False)

    def _execute(self, sql: str) -> None:
        with self.engine.connect() as conn:
            conn.exec_driver_sql(sql)

    def _drop_connections(self, name: str) -> None:
        self._execute(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'")

    def create(self) -> str:
        name = f"payhook_t_{uuid.uuid4().hex[:12]}"
        self._execute(f'CREATE DATABASE "{name}" TEMPLATE "{self.template}"')
        return name

    def drop(self, name: str) -> None:
        self._execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def close(self) -> None:
        self.drop(self.template)
        self.engine.dispose()


@pytest.fixture(scope="session")
def postgres():
    url = environ_database_url()
    if not url:
        yield None
        return
    pg = _Postgres(url)
    yield pg
    pg.close()


DATABASES = ["sqlite", "postgresql"]


@pytest.fixture(params=DATABASES)
def database_url(request, tmp_path, sqlite_template, postgres):
    """A fresh, migrated database: SQLite always, PostgreSQL when TEST_DATABASE_URL is set."""
    if request.param == "sqlite":
        path = tmp_path / "payhook.db"
        shutil.copy(sqlite_template, path)
        yield f"sqlite:///{path}"
        return
    if postgres is None:
        pytest.skip("PostgreSQL tests need TEST_DATABASE_URL")
    name = postgres.create()
    yield postgres.url_for(name)
    postgres.drop(name)


@pytest.fixture
def store(database_url):
    s = Store(database_url)
    yield s
    s.dispose()


@pytest.fixture
def receiver():
    """A real HTTP endpoint on a free port."""
    r = Receiver().start()
    yield r
    r.stop()


class SmtpRecorder:
    """aiosmtpd handler that keeps every message and can answer with scripted codes."""

    def __init__(self):
        self.messages = []
        self.script: list[str] = []  # e.g. ["451 4.3.0 try later"]; consumed one per message

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's naming)
        if self.script:
            return self.script.pop(0)
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), message_from_bytes(envelope.content)))
        return "250 OK"


@pytest.fixture
def smtp_server():
    """A real SMTP server (aiosmtpd) on a free port."""
    handler = SmtpRecorder()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    handler.url = f"smtp+plain://127.0.0.1:{controller.port}"
    yield handler
    controller.stop()


@pytest.fixture
def webhook_app(database_url, redis_url):
    """The real webhook-service Flask app on the test store and Redis."""
    from payhook_webhook.app import create_app

    app = create_app({"database_url": database_url, "redis_url": redis_url, "log_format": "text",
                      "endpoint_allowlist": ("127.0.0.0/8",)})
    app.config["TESTING"] = True
    yield app
    app.extensions["payhook.store"].dispose()


@pytest.fixture
def client(webhook_app):
    return webhook_app.test_client()


@pytest.fixture
def delivery_worker(database_url, redis_url):
    """Start real Dramatiq workers for the delivery queues on the real Redis.

    Call it with setting overrides (``pools=("urgent", "standard")`` starts one
    worker per pool, as separate deployments would); it returns the Runtime.
    """
    import dramatiq

    from payhook_delivery.app import setup
    from payhook_delivery.settings import Settings
    from payhook_shared.priority import DELIVERY, pool_queues

    started, brokers = [], []

    def start(threads: int = 4, pools: tuple[str, ...] = ("all",), **overrides):
        # Receivers listen on 127.0.0.1, which the SSRF guard refuses unless allowlisted.
        overrides.setdefault("endpoint_allowlist", ("127.0.0.0/8",))
        overrides.setdefault("health_port", 0)  # in-process workers: no health server unless a test asks
        settings = Settings.from_env({}, database_url=database_url, redis_url=redis_url,
                                     sweep_interval=0.2, threads=threads, **overrides)
        worker = setup(settings)
        brokers.append(worker.broker)
        for pool in pools:
            dramatiq_worker = dramatiq.Worker(worker.broker, queues=set(pool_queues(DELIVERY, pool)),
                                              worker_threads=threads, worker_timeout=settings.poll_interval_ms)
            dramatiq_worker.start()
            started.append(dramatiq_worker)
        return worker.runtime.get()

    yield start
    for dramatiq_worker in started:
        dramatiq_worker.stop(timeout=10_000)
    for broker in brokers:
        broker.close()


@pytest.fixture
def mail_worker(database_url, redis_url, tmp_path):
    """Start a real Dramatiq worker for the mail queues; returns its Runtime."""
    import dramatiq

    from payhook_mail.app import setup
    from payhook_mail.settings import Settings

    started, brokers = [], []

    def start(**overrides):
        overrides.setdefault("outbox_dir", str(tmp_path / "outbox"))
        overrides.setdefault("health_port", 0)  # in-process workers: no health server unless a test asks
        settings = Settings.from_env({}, database_url=database_url, redis_url=redis_url,
                                     sweep_interval=0.2, **overrides)
        worker = setup(settings)
        brokers.append(worker.broker)
        dramatiq_worker = dramatiq.Worker(worker.broker, worker_threads=2, worker_timeout=100)
        dramatiq_worker.start()
        started.append(dramatiq_worker)
        return worker.runtime.get()

    yield start
    for dramatiq_worker in started:
        dramatiq_worker.stop(timeout=10_000)
    for broker in brokers:
        broker.close()
