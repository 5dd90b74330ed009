"""``GET /v1/stream`` under gunicorn's gevent workers: stalled readers cost ingest nothing; the per-key cap holds.

One web process serves both the streams and the callbacks, the worst case: a
stream that waited on its reader would stall the worker's callbacks with it.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import socket
import time
import urllib.error
import urllib.request
from urllib.parse import urlsplit

import pytest

from factories import api_key, callback_url, merchant_with_endpoints
from payhook_cli import daraja
from support import wait_until

pytestmark = pytest.mark.slow  # gunicorn, workers and the CLI in subprocesses in every test

STALLED = 20


def _stalled_stream(base: str, key: str) -> socket.socket:
    """A stream whose client sends its request and then never reads a byte."""
    url = urlsplit(base)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((url.hostname, url.port))
    sock.sendall(f"GET /v1/stream HTTP/1.1\r\nHost: {url.netloc}\r\nAuthorization: {key}\r\n\r\n".encode())
    return sock


def _post(url: str, body: bytes) -> float:
    started = time.monotonic()
    request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200
    return time.monotonic() - started


def _stream_status(base: str, key: str) -> int:
    request = urllib.request.Request(f"{base}/v1/stream", headers={"Authorization": key})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def _hung_up(sock: socket.socket, within: float = 10.0) -> bool:
    """Read what the server sent until it ends the connection: ``False`` if it still streams after ``within`` s."""
    sock.settimeout(within)
    deadline = time.monotonic() + within
    try:
        while time.monotonic() < deadline:
            if sock.recv(65536) == b"":
                return True
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    return False  # still sending (heartbeats) at the deadline


def test_f_stalled_readers_do_not_block_ingest_and_are_hung_up(store, web_server, tmp_path):
    base = web_server(STREAM_BUFFER="20", STREAM_MAX_PER_KEY=str(STALLED))
    merchant, _ = merchant_with_endpoints(store)
    key = api_key(store, merchant.id)["Authorization"]
    stalled = [_stalled_stream(base, key) for _ in range(STALLED)]
    try:
        # Every stream listening before the first callback: its answer starts once it is (peeked, not read).
        for sock in stalled:
            sock.settimeout(10)
            assert sock.recv(1, socket.MSG_PEEK) == b"H"
        url = f"{base}{callback_url(merchant, 'c2b-confirmation')}"
        # Ordinary callbacks: the server's small send buffer fills after a few dozen, then the notices overflow.
        bodies = [json.dumps({**daraja.build("c2b-confirmation"), "BillRefNumber": f"INV-{i}"}).encode()
                  for i in range(300)]
        with concurrent.futures.ThreadPoolExecutor(10) as pool:
            seconds = list(pool.map(lambda body: _post(url, body), bodies))
        assert max(seconds) < 2.0, f"slowest callback answered in {max(seconds):.2f}s"
        # A reader that never read is hung up on, not left blocking its stream's write for ever.
        assert all(_hung_up(sock) for sock in stalled)
        log = "".join(path.read_text() for path in tmp_path.glob("web-*.log"))
        assert log.count("a slow reader, 20 events behind") == STALLED
    finally:
        for sock in stalled:
            sock.close()


def test_streams_per_key_are_capped_across_processes(store, web_server):
    first, second = web_server(STREAM_MAX_PER_KEY="2"), web_server(STREAM_MAX_PER_KEY="2")
    merchant, _ = merchant_with_endpoints(store)
    key = api_key(store, merchant.id)["Authorization"]
    open_streams = [_stalled_stream(first, key), _stalled_stream(second, key)]
    try:
        wait_until(lambda: _stream_status(second, key) == 429, what="the third stream refused")
        other = api_key(store, merchant.id)["Authorization"]
        assert _stream_status(first, other) == 200  # the cap is per key, not per merchant
    finally:
        for sock in open_streams:
            sock.close()
    wait_until(lambda: _stream_status(first, key) == 200, what="a slot freed by a closed stream")


def test_an_idle_stream_sends_heartbeats(store, web_server):
    base = web_server()  # STREAM_HEARTBEAT_SECONDS=1
    merchant, _ = merchant_with_endpoints(store)
    request = urllib.request.Request(f"{base}/v1/stream", headers=api_key(store, merchant.id))
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/event-stream")
        started, lines = time.monotonic(), []
        while ": heartbeat" not in lines:
            lines.append(response.readline().decode().rstrip("\n"))
        assert time.monotonic() - started < 3
        assert lines[0] == "retry: 2000"


def test_a_stopping_server_ends_its_streams_rather_than_waiting_for_them(store, web_server):
    base = web_server()
    merchant, _ = merchant_with_endpoints(store)
    request = urllib.request.Request(f"{base}/v1/stream", headers=api_key(store, merchant.id))
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.readline() == b"retry: 2000\n"
        gunicorn = web_server.processes[0]
        started = time.monotonic()
        os.killpg(gunicorn.pid, signal.SIGTERM)
        gunicorn.wait(30)
        # Well inside GRACEFUL_TIMEOUT (20 s), which an open stream would otherwise use up.
        assert time.monotonic() - started < 5
