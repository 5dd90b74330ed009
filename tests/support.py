"""Real test peers: a Redis server, an HTTP receiver and an SMTP server, each on a free port; and a count of
the database round trips a piece of code makes."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psycopg
import redis as redis_lib
from sqlalchemy import event


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    """A ``redis-server`` process of our own, never the machine's."""

    def __init__(self, port: int, directory: Path, appendonly: bool = False):
        self.port = port
        self.directory = directory
        self.appendonly = appendonly
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server not found: run `make setup`")
        self.directory.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [binary, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
             "--appendonly", "yes" if self.appendonly else "no", "--dir", str(self.directory)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        client = redis_lib.Redis.from_url(self.url)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                return
            except redis_lib.ConnectionError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError(f"redis-server did not start on port {self.port}") from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


@dataclasses.dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    def json(self):
        return json.loads(self.body)


def self_signed_certificate(directory: Path, name: str = "localhost") -> tuple[Path, Path]:
    """A fresh self-signed certificate for ``name`` (and 127.0.0.1), made with the ``openssl`` CLI.

    Returns ``(certificate, key)`` PEM paths.
    """
    binary = shutil.which("openssl")
    if binary is None:
        raise RuntimeError("the openssl command is needed to make test certificates")
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    subprocess.run(
        [binary, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", f"/CN={name}",
         "-addext", f"subjectAltName=DNS:{name},IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    return cert, key


def serving(server) -> threading.Thread:
    """A daemon thread (not started) that serves ``server`` until its ``shutdown()``, which then returns at once.

    ``serve_forever`` looks for a shutdown every ``poll_interval``: its default half second was most of the
    teardown of every test with a receiver.
    """
    return threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)


class PeerServer(ThreadingHTTPServer):
    """A threaded HTTP server for a test peer that keeps its handlers' errors for the test instead of printing them.

    A client that gave up (a timeout under test) is nothing to report. Printing a traceback from a handler thread
    parses source with ``ast`` beside the test's own (Flask's routes), which CPython before 3.11.8 cannot do on
    two threads at once (gh-106905: "AST constructor recursion depth mismatch").
    """

    daemon_threads = True

    def __init__(self, address, handler) -> None:
        super().__init__(address, handler)
        self.errors: list[BaseException] = []

    def handle_error(self, request, client_address) -> None:
        error = sys.exc_info()[1]
        if not isinstance(error, (ConnectionError, TimeoutError, ssl.SSLError)):
            self.errors.append(error)

    def close(self) -> None:
        """Stop serving; raise the first error a handler met."""
        self.shutdown()
        self.server_close()
        if self.errors:
            raise AssertionError(f"the test peer's handler failed: {self.errors[0]!r}") from self.errors[0]


class Receiver:
    """A real HTTP server standing in for a merchant's endpoint.

    ``respond`` decides each answer: it gets the request and returns
    ``(status, headers, body)``; the default accepts everything with 200.
    With ``tls=(certificate, key)`` it speaks HTTPS.
    """

    def __init__(self, tls: tuple[Path, Path] | None = None):
        self.received: list[Received] = []
        self.respond: Callable[[Received], tuple[int, dict, bytes]] = lambda r: (200, {}, b'{"ok":true}')
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("content-length", 0))
                body = self.rfile.read(length)
                if len(body) < length:  # the sender died mid-request (a killed worker): nothing arrived
                    self.close_connection = True
                    return
                req = Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body, time.time())
                status, headers, payload = receiver.respond(req)
                with receiver._lock:
                    receiver.received.append(req)
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args) -> None:
                pass

        self.server = PeerServer(("127.0.0.1", 0), Handler)
        self.scheme = "https" if tls else "http"
        if tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.thread = serving(self.server)

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}/webhooks"

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def start(self) -> "Receiver":
        self.thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, then check every webhook received against the event catalog.

        Every test's receiver is checked, so a body Payhook sends that its catalog
        does not describe fails the test that made it send it.
        """
        self.server.close()
        with self._lock:
            received = list(self.received)
        check_webhooks(received)

    def wait_for(self, count: int, timeout: float = 10) -> list[Received]:
        """Block until ``count`` requests arrived; fail the test otherwise."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.received) >= count:
                    return list(self.received)
            time.sleep(0.02)
        raise AssertionError(f"receiver got {len(self.received)} request(s), expected {count}")


def check_webhooks(received: list[Received]) -> None:
    """Validate each Payhook webhook (a request with ``webhook-id``) against its type's catalog schema.

    Raises:
      AssertionError: naming the first body that does not match, and why.
    """
    import jsonschema

    from payhook_shared import catalog

    for request in received:
        if "webhook-id" not in request.headers:
            continue
        body = request.json()
        entry = catalog.entry_for(body["type"], body["data"]["provider"])
        error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(
            entry.body_schema(), format_checker=jsonschema.FormatChecker()).iter_errors(body))
        assert error is None, (f"{body['type']} body does not match the event catalog: "
                               f"{error.message} at {list(error.absolute_path)}")


def queued_deliveries(redis_client, queue: str) -> list[str]:
    """The delivery ids named by the messages waiting on ``queue`` (a message names up to ``MAX_DELIVERIES``)."""
    ids = redis_client.lrange(f"dramatiq:{queue}", 0, -1)
    bodies = redis_client.hmget(f"dramatiq:{queue}.msgs", ids) if ids else []
    return [d for body in bodies for d in json.loads(body)["kwargs"]["delivery_ids"]]


def wait_until(predicate: Callable[[], object], timeout: float = 10, interval: float = 0.05, what: str = "condition"):
    """Poll ``predicate`` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class Clock:
    """A clock the test moves: pass it as a worker's ``clock`` to test retries, leases and circuits without
    waiting for them.

    It starts at the real time and stands still until moved (``advance``), or, with ``running=True``, goes
    on with the real time, ``advance`` jumping it ahead.
    """

    def __init__(self, running: bool = False):
        self._running = running
        self._start = dt.datetime.now(dt.timezone.utc)
        self._offset = dt.timedelta()
        self._lock = threading.Lock()

    def __call__(self) -> dt.datetime:
        with self._lock:
            return (dt.datetime.now(dt.timezone.utc) if self._running else self._start) + self._offset

    def advance(self, seconds: float) -> None:
        """Move the clock ``seconds`` forward."""
        with self._lock:
            self._offset += dt.timedelta(seconds=seconds)


def environ_database_url() -> str | None:
    """The PostgreSQL server tests may use, if the environment names one."""
    return os.environ.get("TEST_DATABASE_URL") or None


def csrf_token(page: str) -> str:
    """The CSRF token a console page's forms carry."""
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


def console_sign_in(client, api_key: str) -> str:
    """Sign ``client`` (a Flask test client) in to the console with ``api_key``; the session's CSRF token."""
    token = csrf_token(client.get("/console/login").get_data(as_text=True))
    response = client.post("/console/login", data={"api_key": api_key, "csrf_token": token})
    assert response.status_code == 302, response.get_data(as_text=True)[:300]
    return csrf_token(client.get("/console/dead-letters").get_data(as_text=True))


class Trips(list):
    """Round trips as they happen, each noted with its thread (a worker's sweeper shares the engine)."""

    def note(self, name: str, sql: str = "") -> None:
        self.append((threading.get_ident(), name, sql))

    def of_thread_that_ran(self, fragment: str) -> list[str]:
        """The round trips of the thread whose statements include ``fragment``."""
        thread = next(t for t, _, sql in self if fragment in sql)
        return [name for t, name, _ in self if t == thread]


def _counting_cursor(trips: Trips) -> type:
    class Counting(psycopg.Cursor):
        def execute(self, query, params=None, **kwargs):
            trips.note(query.split(None, 1)[0].upper(), query)
            return super().execute(query, params, **kwargs)
    return Counting


@contextlib.contextmanager
def counting(engine) -> Iterator[Trips]:
    """Every database round trip made on ``engine`` meanwhile, counted where it reaches the driver.

    On PostgreSQL every cursor's statements (the hot paths run on the psycopg connection itself, past
    SQLAlchemy), on SQLite SQLAlchemy's statement event; plus BEGIN, COMMIT and ROLLBACK on connections
    that are not in autocommit.
    """
    trips = Trips()
    cursor = _counting_cursor(trips)

    def statement(conn, cursor, sql, parameters, context, executemany):
        if conn.dialect.name == "sqlite":
            trips.note(sql.split(None, 1)[0].upper(), sql)

    def checkout(dbapi_conn, record, proxy):
        if engine.dialect.name == "postgresql":
            dbapi_conn.cursor_factory = cursor

    def checkin(dbapi_conn, record):
        if engine.dialect.name == "postgresql" and dbapi_conn is not None:
            dbapi_conn.cursor_factory = psycopg.Cursor

    def control(name):
        def note(conn, *args):
            # psycopg sends BEGIN before a transaction's first statement; SQLite's BEGIN is a statement above.
            if conn.get_execution_options().get("isolation_level") == "AUTOCOMMIT":
                return
            if name == "BEGIN" and conn.dialect.name == "sqlite":
                return
            trips.note(name)
        return note

    hooks = [(engine, "before_cursor_execute", statement), (engine, "begin", control("BEGIN")),
             (engine, "commit", control("COMMIT")), (engine, "rollback", control("ROLLBACK")),
             (engine.pool, "checkout", checkout), (engine.pool, "checkin", checkin)]
    for target, name, hook in hooks:
        event.listen(target, name, hook)
    try:
        yield trips
    finally:
        for target, name, hook in hooks:
            event.remove(target, name, hook)
