"""``payhook listen`` against the real stack: webhook-service under gunicorn, the session's Redis, a real receiver.

A callback recorded by any web process reaches the listener's local URL within
seconds, signed with the secret the listener printed; a listener restarted
after a kill resumes where it stopped, so every event arrives exactly once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from standardwebhooks.webhooks import Webhook

from factories import api_key, callback_url, merchant_with_endpoints
from payhook_cli import daraja
from support import Receiver, wait_until

pytestmark = pytest.mark.slow  # gunicorn, workers and the CLI in subprocesses in every test

BIN = Path(sys.executable).parent


def _key(store, merchant_id: str) -> str:
    return api_key(store, merchant_id)["Authorization"].removeprefix("Bearer ")


def _post_callback(base: str, merchant, kind: str = "stk", **options) -> dict:
    body = json.dumps(daraja.build(kind, daraja.Options(**options))).encode()
    request = urllib.request.Request(f"{base}{callback_url(merchant, kind)}", data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200
        return json.loads(response.read())


def _connected(listening) -> bool:
    err = listening.output.with_suffix(".err")
    return "-- connected" in err.read_text()


@pytest.fixture
def receiver():
    server = Receiver().start()
    yield server
    server.stop()


def test_a_callback_reaches_the_local_url_signed_with_the_printed_secret(store, web_server, listen, receiver):
    base = web_server()
    merchant, _ = merchant_with_endpoints(store)
    listening = listen(base, _key(store, merchant.id), receiver.url)
    secret = listening.secret
    wait_until(lambda: _connected(listening), what="the listener connected")

    # Posted by the CLI itself, as a developer would.
    simulated = subprocess.run([str(BIN / "payhook"), "simulate", "stk", "--amount", "250",
                                "--to", f"{base}/cb/{merchant.id}/{merchant.callback_token}"],
                               capture_output=True, text=True, timeout=30)
    assert simulated.returncode == 0, simulated.stderr

    got = receiver.wait_for(1, timeout=5)[0]
    Webhook(secret).verify(got.body, got.headers)  # raises unless signed with the printed secret
    body = json.loads(got.body)
    assert body["type"] == "mpesa.stk_push" and body["data"]["amount"] == "250.00"
    assert got.headers["webhook-id"] == body["id"]
    line = wait_until(listening.forwarded, what="the listener's line")[0]
    assert (line["type"], line["amount"], line["status"]) == ("mpesa.stk_push", "250.00", 200)
    assert listening.stop() == 0


def test_b_a_restarted_listener_gets_every_event_exactly_once(store, web_server, listen, receiver):
    base = web_server()
    merchant, _ = merchant_with_endpoints(store)
    key = _key(store, merchant.id)
    first = listen(base, key, receiver.url)
    wait_until(lambda: _connected(first), what="the listener connected")
    _post_callback(base, merchant)
    receiver.wait_for(1)
    wait_until(first.forwarded, what="the first event's line, printed once its place is saved")
    first.stop(signal.SIGKILL)

    for _ in range(50):
        _post_callback(base, merchant)
    second = listen(base, key, receiver.url)

    received = receiver.wait_for(51, timeout=20)
    wait_until(lambda: len(second.forwarded()) >= 50, what="the restarted listener's lines")
    ids = [r.headers["webhook-id"] for r in receiver.received]
    assert len(ids) == len(set(ids)) == 51
    assert first.secret == second.secret  # the session's secret is kept with its place
    for got in received:
        Webhook(second.secret).verify(got.body, got.headers)


def test_c_a_listener_on_one_web_server_gets_events_recorded_by_another(store, web_server, listen, receiver):
    listening_to, ingesting = web_server(), web_server()
    merchant, _ = merchant_with_endpoints(store)
    listening = listen(listening_to, _key(store, merchant.id), receiver.url, "--events", "mpesa.c2b.confirmation")
    wait_until(lambda: _connected(listening), what="the listener connected")

    _post_callback(ingesting, merchant, "stk")  # filtered out by --events
    _post_callback(ingesting, merchant, "c2b-confirmation", amount=daraja.Decimal("99"))

    got = receiver.wait_for(1, timeout=5)
    assert [json.loads(g.body)["type"] for g in got] == ["mpesa.c2b.confirmation"]
    _post_callback(ingesting, merchant, "c2b-confirmation")
    assert len(receiver.wait_for(2, timeout=5)) == 2


def test_a_refused_key_exits_1(web_server, listen, receiver):
    listening = listen(web_server(), "not-a-key", receiver.url)
    assert listening.proc.wait(20) == 1
