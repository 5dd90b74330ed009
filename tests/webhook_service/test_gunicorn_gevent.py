"""The webhook-service under its real gunicorn, one gevent worker: a request waiting on I/O holds up no other.

gevent patches the standard library when the worker starts; a client library imported before that, or
one that blocks in C, would stall every request of the worker while one waits. Two tests keep one
request waiting (on a merchant's slow C2B validation URL, on a database lock) and ask the same worker
for ``/health`` meanwhile; a third checks that requests served together keep their own log context.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import psycopg
import pytest
from sqlalchemy import func, select

from factories import callback_url, fixture_bytes, merchant_with_endpoints, set_merchant_settings
from payhook_shared.store import Event
from support import free_port, wait_until

BIN = os.path.dirname(sys.executable)
# The waiting request is held this long at most; /health must answer well inside it.
HOLD = 4.0


def _post(url: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def _seconds_to_answer(url: str) -> float:
    started = time.monotonic()
    with urllib.request.urlopen(url, timeout=HOLD * 2) as response:
        assert response.status == 200
    return time.monotonic() - started


def _answers(url: str) -> bool:
    try:
        return _seconds_to_answer(url) >= 0
    except OSError:
        return False


@contextlib.contextmanager
def _serve(database_url: str, redis_url: str, tmp_path, *args: str):
    """The webhook-service as production runs it (``payhook-webhook-service *args``), one worker; its base URL.

    Its output (JSON log, and gunicorn's logs) goes to ``tmp_path / "web.log"``.
    """
    port = free_port()
    env = {**os.environ, "DATABASE_URL": database_url, "REDIS_URL": redis_url, "BIND": f"127.0.0.1:{port}",
           "WEB_WORKERS": "1", "LOG_FORMAT": "json", "ENDPOINT_ALLOWLIST": "127.0.0.0/8",
           "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "multiproc")}
    with (tmp_path / "web.log").open("wb") as log:
        proc = subprocess.Popen([os.path.join(BIN, "payhook-webhook-service"), *args], env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _answers(f"{base}/health/ready"), timeout=30, what="the webhook-service ready")
        yield base
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)


@pytest.fixture
def web(database_url, redis_url, tmp_path):
    """The webhook-service under gunicorn, one worker; its base URL. Its log is ``tmp_path / "web.log"``."""
    with _serve(database_url, redis_url, tmp_path) as base:
        yield base


def test_a_slow_c2b_validation_url_holds_up_no_other_request(web, store, receiver):
    arrived, release = threading.Event(), threading.Event()

    def slow_merchant(_request):
        arrived.set()
        release.wait(HOLD)
        return 200, {}, b'{"ResultCode": "0", "ResultDesc": "Accepted"}'

    receiver.respond = slow_merchant
    merchant, _ = merchant_with_endpoints(store, "http://127.0.0.1:9/a")
    set_merchant_settings(store, merchant, {"c2b_validation": {
        "mode": "forward", "forward_url": receiver.url, "forward_timeout": HOLD * 2, "fallback": "reject"}})
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        validation = pool.submit(_post, web + callback_url(merchant, "c2b-validation"),
                                 fixture_bytes("mpesa/c2b_validation.json"))
        assert arrived.wait(10), "the validation never reached the merchant"
        waited = _seconds_to_answer(f"{web}/health")
        release.set()
        answer = validation.result(timeout=10)
    assert waited < 1.0, f"/health took {waited:.2f} s while a validation waited on the merchant"
    assert answer == (200, {"ResultCode": "0", "ResultDesc": "Accepted"})


def test_a_write_waiting_on_the_database_holds_up_no_other_request(web, store, database_url):
    if not database_url.startswith("postgresql"):
        pytest.skip("a lock another session holds, on PostgreSQL")
    merchant, _ = merchant_with_endpoints(store, "http://127.0.0.1:9/a")
    with psycopg.connect(database_url.replace("+psycopg", "", 1)) as locker, concurrent.futures.ThreadPoolExecutor(1) as pool:
        locker.execute("LOCK TABLE events IN EXCLUSIVE MODE")
        callback = pool.submit(_post, web + callback_url(merchant, "stk"), fixture_bytes("mpesa/stk_success.json"))
        wait_until(lambda: locker.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        ).fetchone()[0], timeout=10, what="the callback's write waiting on the lock")
        waited = max(_seconds_to_answer(f"{web}/health"), _seconds_to_answer(f"{web}/health/ready"))
        locker.commit()
        status, _ = callback.result(timeout=10)
    assert waited < 1.0, f"/health took {waited:.2f} s while a callback's write waited on the database"
    assert status == 200


def test_concurrent_callbacks_keep_their_own_correlation_ids(web, store, database_url, tmp_path):
    # Written together by one leader, each callback is still answered and logged in its own context.
    merchant, _ = merchant_with_endpoints(store, "http://127.0.0.1:9/a")

    def send(n: int) -> tuple[int, dict]:
        stk = json.loads(fixture_bytes("mpesa/stk_success.json"))
        stk["Body"]["stkCallback"]["CheckoutRequestID"] = f"ws_CO_concurrent_{n}"
        return _post(web + callback_url(merchant, "stk"), json.dumps(stk).encode(), {"X-Request-ID": f"req-{n}"})

    with concurrent.futures.ThreadPoolExecutor(24) as pool:
        assert {status for status, _ in pool.map(send, range(48))} == {200}
    with urllib.request.urlopen(f"{web}/metrics", timeout=10) as response:
        batches = re.search(r"^payhook_ingest_batch_events_count (\S+)$", response.read().decode(), re.M)
    # PostgreSQL's round trip lets the others queue behind the leader; SQLite's write does not yield.
    assert float(batches.group(1)) < 48 or not database_url.startswith("postgresql"), batches.group(0)
    with store.read() as session:
        checkout_of = dict(session.execute(select(Event.id, Event.dedupe_key)).all())
    recorded = {}
    for line in (tmp_path / "web.log").read_text().splitlines():
        record = json.loads(line[line.index("{"):]) if "{" in line else {}
        if str(record.get("message", "")).startswith("recorded "):
            recorded[record.get("correlation_id")] = record.get("event_id")
    assert len(recorded) == 48
    for n in range(48):
        assert checkout_of[recorded[f"req-{n}"]].endswith(f"ws_CO_concurrent_{n}")


def _post_chunked(base: str, path: str, body: bytes) -> tuple[int, dict]:
    """POST ``body`` with ``Transfer-Encoding: chunked`` (no Content-Length), in 8 KiB chunks."""
    host, port = base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        chunks = (body[i:i + 8192] for i in range(0, len(body), 8192))
        conn.request("POST", path, body=chunks, headers={"Content-Type": "application/json"}, encode_chunked=True)
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"{}")
    finally:
        conn.close()


def test_a_chunked_body_over_the_limit_is_refused_by_the_real_server(web, store):
    merchant, _ = merchant_with_endpoints(store, "http://127.0.0.1:9/a")
    stk = fixture_bytes("mpesa/stk_success.json")
    status, answer = _post_chunked(web, callback_url(merchant, "stk"), stk + b" " * (64 * 1024))
    assert status == 413, answer
    with store.read() as session:
        assert session.scalar(select(func.count()).select_from(Event)) == 0
    status, answer = _post_chunked(web, callback_url(merchant, "stk"), stk + b" " * (64 * 1024 - len(stk)))
    assert status == 200, answer


@pytest.mark.slow
def test_callback_tokens_never_reach_the_logs_or_metrics(database_url, redis_url, store, tmp_path):
    merchant, _ = merchant_with_endpoints(store, "http://127.0.0.1:9/a")
    wrong = "f" * 32
    with _serve(database_url, redis_url, tmp_path, "--access-logfile", "-", "--log-level", "debug") as web:
        assert _post(web + callback_url(merchant, "stk"), fixture_bytes("mpesa/stk_success.json"))[0] == 200
        assert _post(web + callback_url(merchant, "stk"), b'{"Body": {}}')[0] == 400
        assert _post(web + callback_url(merchant, "stk"), b"not json")[0] == 400
        assert _post(f"{web}/cb/{merchant.id}/{wrong}/stk", b"{}")[0] == 404
        assert _post(f"{web}/in/src_unknown/{wrong}", b"{}")[0] == 404
        with urllib.request.urlopen(f"{web}/metrics", timeout=10) as response:
            scraped = response.read().decode()
        wait_until(lambda: (tmp_path / "web.log").read_text().count(f"/cb/{merchant.id}/") >= 4, timeout=10,
                   what="the access log lines")
    # The two invalid bodies on the valid URL were quarantined, counted across gunicorn's processes.
    assert re.search(r'^payhook_callbacks_quarantined_total\{kind="stk",provider="mpesa"\} 2\.0$', scraped, re.M)
    assert re.search(r'^payhook_callbacks_quarantine_failures_total\{provider="mpesa"\} 0\.0$', scraped, re.M)
    log = (tmp_path / "web.log").read_text()
    assert "[redacted]" in log and f'"POST /cb/{merchant.id}/[redacted]/stk HTTP/1.1" 200' in log, log
    for token in (merchant.callback_token, wrong):
        assert token not in log, log
        assert token not in scraped
