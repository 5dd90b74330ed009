"""Engines and sessions for SQLite (the zero-configuration default) and PostgreSQL."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

import sqlalchemy
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

SQLITE_BUSY_TIMEOUT_MS = 10_000
# A statement or lock wait longer than these is a fault to surface, not to queue behind.
PG_STATEMENT_TIMEOUT_MS = 15_000
PG_LOCK_TIMEOUT_MS = 5_000


def normalise_url(url: str) -> str:
    """Pick the psycopg 3 driver for plain ``postgres(ql)://`` URLs."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def create_engine(url: str, pool_size: int = 5, prepared: bool = False, **kwargs: Any) -> Engine:
    """An engine configured for concurrent service use.

    SQLite runs in WAL mode with a busy timeout, and write transactions begin
    ``IMMEDIATE`` so two writers queue for the lock instead of deadlocking on
    a read-to-write upgrade.

    PostgreSQL connections set statement and lock timeouts at connect time
    (unless the URL brings its own ``options``) and by default use no
    server-side prepared statements, so a PgBouncer in transaction mode can sit
    in between: there, put the timeouts on the database role and pass
    ``?options=`` empty. Connected straight to PostgreSQL (or through a
    PgBouncer of 1.21 or later with ``max_prepared_statements``), ``prepared``
    prepares a statement once a connection has run it five times, which saves
    the database a parse and plan each time (the delivery attempt's two
    statements; ingest's write is a PL/pgSQL function, whose plans PostgreSQL
    keeps per connection anyway).
    ``pool_size`` should match the threads of the process using the engine.

    Connections are not pinged at checkout (a round trip on every use): a
    connection found dead fails its one operation, which answers 503 or is
    retried, and SQLAlchemy then replaces every connection of the pool.
    """
    url = normalise_url(url)
    if url.startswith("sqlite"):
        private_sqlite_file(url)
        engine = sqlalchemy.create_engine(url, **kwargs)
        _configure_sqlite(engine)
        return engine
    connect_args: dict[str, Any] = {"prepare_threshold": 5 if prepared else None}
    if "options" not in sqlalchemy.make_url(url).query:
        connect_args["options"] = (f"-c statement_timeout={PG_STATEMENT_TIMEOUT_MS} "
                                   f"-c lock_timeout={PG_LOCK_TIMEOUT_MS}")
    return sqlalchemy.create_engine(
        url, pool_size=pool_size, max_overflow=pool_size, pool_recycle=1800,
        connect_args=connect_args, **kwargs,
    )


def private_sqlite_file(url: str) -> None:
    """Make a SQLite database file owner-only (0600), creating it so, before SQLite would with the umask's mode.

    The file holds API key hashes, endpoint secrets and payments; SQLite gives its
    -wal and -shm files the database file's mode. Other databases are left alone.
    """
    if not normalise_url(url).startswith("sqlite"):
        return
    database = sqlalchemy.make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    try:
        fd = os.open(database, os.O_RDONLY | os.O_CREAT, 0o600)
    except OSError:
        return  # a missing folder or no permission: SQLite reports it in its own words when it connects
    try:
        if os.fstat(fd).st_uid == os.getuid():
            os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Take over transaction control from pysqlite so "begin" below decides the mode.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        mode = "IMMEDIATE" if conn.get_execution_options().get("payhook_write") else "DEFERRED"
        conn.exec_driver_sql(f"BEGIN {mode}")


class Store:
    """The database behind one process: an engine and its sessions."""

    def __init__(self, url: str, pool_size: int = 5, prepared: bool = False, **engine_kwargs: Any):
        self.url = normalise_url(url)
        self.engine = create_engine(self.url, pool_size=pool_size, prepared=prepared, **engine_kwargs)
        self._writer = self.engine.execution_options(payhook_write=True)
        self._write_sessions = sessionmaker(self._writer, expire_on_commit=False)
        # PostgreSQL reads run in autocommit: READ COMMITTED already gives each statement its own
        # snapshot, so a transaction around reads only costs BEGIN and ROLLBACK round trips.
        self._reader = (self.engine.execution_options(isolation_level="AUTOCOMMIT")
                        if self.engine.dialect.name == "postgresql" else self.engine)
        self._read_sessions = sessionmaker(self._reader, expire_on_commit=False)

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self.engine.dialect.name

    @contextlib.contextmanager
    def write(self) -> Iterator[Session]:
        """A session whose work commits at the end of the block, or rolls back on error."""
        with self._write_sessions.begin() as session:
            yield session

    @contextlib.contextmanager
    def read(self) -> Iterator[Session]:
        """A session for reads only (on PostgreSQL each statement is its own transaction)."""
        with self._read_sessions() as session:
            yield session

    @contextlib.contextmanager
    def driver(self) -> Iterator[Any]:
        """PostgreSQL only: the pooled psycopg connection itself, in autocommit, for the hot paths.

        One statement a callback or a delivery attempt, run without SQLAlchemy's
        execution layer, which costs more client CPU than the statement itself
        (docs/performance.md has the figures). Driver errors come out as SQLAlchemy's
        ``DBAPIError``, like everywhere else, and a lost connection is dropped
        from the pool.
        """
        if self.dialect != "postgresql":
            raise RuntimeError("driver connections are for PostgreSQL")
        with self._reader.connect() as conn:
            dbapi = conn.connection.dbapi_connection
            try:
                yield dbapi
            except self.engine.dialect.loaded_dbapi.Error as exc:
                disconnected = self.engine.dialect.is_disconnect(exc, dbapi, None)
                if disconnected:
                    conn.invalidate(exc)
                raise sqlalchemy.exc.DBAPIError.instance(
                    None, None, exc, self.engine.dialect.loaded_dbapi.Error,
                    connection_invalidated=disconnected, dialect=self.engine.dialect) from exc

    def ping(self) -> None:
        """Raise if the database cannot answer a trivial query."""
        with self.engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")

    def dispose(self) -> None:
        """Close every pooled connection (on shutdown, or after a fork)."""
        self.engine.dispose()
