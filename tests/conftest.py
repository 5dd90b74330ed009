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
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings

from support import Receiver, RedisServer, environ_database_url, free_port
from support_sandbox import daraja_sandbox  # noqa: F401  (the Daraja sandbox fixture, for every folder)

REDIS_PORT = free_port()
# Anything that reads the environment (a CLI, a subprocess) reaches the session's Redis, never the machine's.
os.environ["REDIS_URL"] = f"redis://127.0.0.1:{REDIS_PORT}/0"
os.environ.setdefault("LOG_FORMAT", "text")

from payhook_shared.store import Store  # noqa: E402
from payhook_shared.store.db import normalise_url  # noqa: E402
from payhook_shared.store.migrate import upgrade  # noqa: E402
from payhook_shared.store.models import utcnow  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures"

# Hypothesis budgets, in examples per property test. The suite's properties are the callback fuzz tests
# (tests/webhook_service/test_callback_fuzz.py): four on the M-Pesa routes, plus two on the gateway routes
# at a quarter of the budget, as each of their bodies is signed and most are recorded.
#   ci     CI=true                  1,000 each: 4,500 bodies in all, about 20 s of CPU (11,600 before)
#   dev    the default                150 each:   675 bodies, about 3 s
#   fuzz   HYPOTHESIS_PROFILE=fuzz  10,000 each: 45,000 bodies, a few minutes: a long hunt before a release
# No example database, so a run never depends on the last one; no deadline, as the machine may be loaded.
_HYPOTHESIS = {"deadline": None, "database": None,
               "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large]}
hypothesis_settings.register_profile("ci", max_examples=1000, **_HYPOTHESIS)
hypothesis_settings.register_profile("dev", max_examples=150, **_HYPOTHESIS)
hypothesis_settings.register_profile("fuzz", max_examples=10_000, **_HYPOTHESIS)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE")
                                 or ("ci" if os.environ.get("CI") == "true" else "dev"))


def pytest_collection_modifyitems(config, items):
    """The files holding a ``slow`` test first, every file's tests in their own order.

    ``make test`` hands whole files to its xdist workers in this order (``--dist loadfile
    --no-loadscope-reorder``): the long files (the drills, the fuzz, the CLI on gunicorn, the query plans'
    100,000 events) start first, so none of them is left to end the run on one worker while the others idle.
    """
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow_files)


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


# What a test may leave behind outside its rows: the tables, functions, triggers and sequences of the public
# schema, and the revision. Compared after every test on the shared database; any change means it is rebuilt.
_SCHEMA_FINGERPRINT = """
SELECT md5(coalesce((SELECT string_agg(c.relkind::text || c.relname, ',' ORDER BY c.relname) FROM pg_class c
                     JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public'), '')
           || coalesce((SELECT string_agg(md5(pg_get_functiondef(p.oid)), ',' ORDER BY p.proname) FROM pg_proc p
                        JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'public'), '')
           || coalesce((SELECT string_agg(t.tgname, ',' ORDER BY t.tgname) FROM pg_trigger t
                        WHERE NOT t.tgisinternal), '')
           || coalesce((SELECT string_agg(version_num, ',') FROM alembic_version), ''))
"""


class _Postgres:
    """One migrated template database per session, copied for the shared test database and fresh ones.

    Tests share one database (``shared_url``), emptied after each by ``reset``; a test that changes the
    schema takes a database of its own (``create``, through ``fresh_database_url``).
    """

    def __init__(self, url: str):
        self.admin_url = normalise_url(url)
        self.engine = sqlalchemy.create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        # Named after the xdist worker (gw0, gw1, ...) where there is one: each worker has its own databases.
        self.prefix = f"payhook_{os.environ.get('PYTEST_XDIST_WORKER', 'main')}"
        self.template = f"{self.prefix}_tpl_{uuid.uuid4().hex[:10]}"
        self.created = 0  # databases made this session, the template included (see pytest_terminal_summary)
        self._execute(f'CREATE DATABASE "{self.template}"')
        self.created += 1
        upgrade(self.url_for(self.template))
        self._drop_connections(self.template)
        self.shared: str | None = None
        self._shared_engine: sqlalchemy.Engine | None = None
        self._empty = ""
        self._fingerprint = ""

    def url_for(self, name: str) -> str:
        return sqlalchemy.make_url(self.admin_url).set(database=name).render_as_string(hide_password=False)

    def _execute(self, sql: str) -> None:
        with self.engine.connect() as conn:
            conn.exec_driver_sql(sql)

    def _drop_connections(self, name: str) -> None:
        self._execute(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'")

    def create(self) -> str:
        """A new database, migrated (copied from the template); the caller drops it."""
        name = f"{self.prefix}_t_{uuid.uuid4().hex[:12]}"
        self._execute(f'CREATE DATABASE "{name}" TEMPLATE "{self.template}"')
        self.created += 1
        return name

    def drop(self, name: str) -> None:
        self._execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def shared_url(self) -> str:
        """The session's shared test database, made on first use."""
        if self.shared is None:
            self.shared = self.create()
            self._shared_engine = sqlalchemy.create_engine(self.url_for(self.shared), isolation_level="AUTOCOMMIT",
                                                           poolclass=sqlalchemy.pool.NullPool)
            with self._shared_engine.connect() as conn:
                schema = sqlalchemy.MetaData()
                schema.reflect(conn)
                sequences = conn.exec_driver_sql(
                    "SELECT quote_ident(sequencename) FROM pg_sequences WHERE schemaname = 'public'").scalars().all()
                self._fingerprint = conn.exec_driver_sql(_SCHEMA_FINGERPRINT).scalar()
            # DELETE, children first, rather than TRUNCATE: a test leaves a handful of rows, which DELETE
            # removes in milliseconds, while TRUNCATE makes and syncs new files for every table (0.25-0.45 s
            # a test on a loaded machine). One round trip for all of it.
            self._empty = "; ".join(
                [f'DELETE FROM "{t.name}"' for t in reversed(schema.sorted_tables) if t.name != "alembic_version"]
                + [f"ALTER SEQUENCE {name} RESTART" for name in sequences])
        return self.url_for(self.shared)

    def reset(self) -> None:
        """Empty the shared database after a test, leaving nothing of it behind.

        Connections the test left open are ended first: they would hold advisory locks, temporary tables,
        session settings or a transaction the emptying would wait for. Every table is emptied and every
        sequence restarted (as TRUNCATE ... RESTART IDENTITY would, faster). Tables, functions, triggers,
        extensions (``pg_stat_statements``) and the revision are compared with the migrated schema's
        fingerprint: a test that changed them (it should have asked for ``fresh_database_url``) gets the
        shared database rebuilt from the template, so the next test still starts from the migrated schema.
        """
        assert self.shared is not None and self._shared_engine is not None
        self._drop_connections(self.shared)
        with self._shared_engine.connect() as conn:
            if conn.exec_driver_sql(_SCHEMA_FINGERPRINT).scalar() == self._fingerprint:
                conn.exec_driver_sql(self._empty)
                return
        self.drop(self.shared)
        self._execute(f'CREATE DATABASE "{self.shared}" TEMPLATE "{self.template}"')
        self.created += 1

    def close(self) -> None:
        if self.shared is not None:
            self._shared_engine.dispose()
            self.drop(self.shared)
        self.drop(self.template)
        self.engine.dispose()


@pytest.fixture(scope="session")
def postgres(request):
    url = environ_database_url()
    if not url:
        yield None
        return
    pg = _Postgres(url)
    request.config.stash[_POSTGRES] = pg
    yield pg
    pg.close()


_POSTGRES = pytest.StashKey[_Postgres]()
_WORKERS_CREATED = pytest.StashKey[int]()  # databases the xdist workers made, summed as each one finishes


def pytest_sessionfinish(session):
    """An xdist worker hands the number of databases it made to the controller, which reports the sum."""
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None and _POSTGRES in session.config.stash:
        workeroutput["postgres_created"] = session.config.stash[_POSTGRES].created


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    """Add up what each finished xdist worker reported (see ``pytest_sessionfinish``)."""
    created = getattr(node, "workeroutput", {}).get("postgres_created")
    if created is not None:
        node.config.stash[_WORKERS_CREATED] = node.config.stash.get(_WORKERS_CREATED, 0) + created


def pytest_terminal_summary(terminalreporter, config):
    """Report how many PostgreSQL databases the run made: one per test would make the suite wait on them.

    Each xdist worker has its own template and shared database, so a run on N workers makes 2 x N more.
    """
    if _POSTGRES in config.stash:
        terminalreporter.write_line(f"PostgreSQL databases created: {config.stash[_POSTGRES].created}")
    elif _WORKERS_CREATED in config.stash:
        terminalreporter.write_line(f"PostgreSQL databases created: {config.stash[_WORKERS_CREATED]}")


DATABASES = ["sqlite", "postgresql"]


@pytest.fixture(params=DATABASES)
def database_url(request, tmp_path, sqlite_template, postgres):
    """A migrated, empty database: SQLite always, PostgreSQL when TEST_DATABASE_URL is set.

    SQLite: a copy of the session's migrated template file. PostgreSQL: the session's one shared database,
    emptied after the test (see ``_Postgres.reset``). Either way the schema is the migrated one and no row,
    sequence value or lock of an earlier test is left; a test that changes the schema takes
    ``fresh_database_url`` instead.
    """
    if request.param == "sqlite":
        path = tmp_path / "payhook.db"
        shutil.copy(sqlite_template, path)
        yield f"sqlite:///{path}"
        return
    if postgres is None:
        pytest.skip("PostgreSQL tests need TEST_DATABASE_URL")
    yield postgres.shared_url()
    postgres.reset()


@pytest.fixture(params=DATABASES)
def fresh_database_url(request, tmp_path, sqlite_template, postgres):
    """A migrated database of this test's own, dropped after it: for tests that downgrade, upgrade or
    otherwise change the schema, which must not touch the shared one."""
    if request.param == "sqlite":
        path = tmp_path / "fresh.db"
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
    worker per pool, as separate deployments would, and ``clock=support.Clock()``
    judges retries, leases and circuits by a clock the test moves); it returns the Runtime.
    """
    import dramatiq

    from payhook_delivery.app import setup
    from payhook_delivery.settings import Settings
    from payhook_shared.priority import DELIVERY, pool_queues

    started, brokers = [], []

    def start(threads: int = 4, pools: tuple[str, ...] = ("all",), clock=utcnow, **overrides):
        # Receivers listen on 127.0.0.1, which the SSRF guard refuses unless allowlisted.
        overrides.setdefault("endpoint_allowlist", ("127.0.0.0/8",))
        overrides.setdefault("health_port", 0)  # in-process workers: no health server unless a test asks
        settings = Settings.from_env({}, database_url=database_url, redis_url=redis_url,
                                     sweep_interval=0.2, threads=threads, **overrides)
        worker = setup(settings, clock)
        brokers.append(worker.broker)
        for pool in pools:
            # Worker threads notice stop() only when their wait for work times out: a short one, or every
            # test's teardown waits out the setting's (a second by default) for nothing.
            dramatiq_worker = dramatiq.Worker(worker.broker, queues=set(pool_queues(DELIVERY, pool)),
                                              worker_threads=threads, worker_timeout=100)
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
