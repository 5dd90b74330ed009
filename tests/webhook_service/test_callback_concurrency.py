"""The same callback posted 50 times at once, over real HTTP: 50 answers, one event, one delivery per endpoint."""

from __future__ import annotations

import json
import threading
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import func, select
from werkzeug.serving import make_server

from factories import callback_url, fixture_bytes, merchant_with_endpoints
from payhook_shared.store import Delivery, Email, Event
from support import queued_deliveries, serving

COPIES = 50


@pytest.fixture
def server(webhook_app):
    """The webhook-service on a real threaded HTTP server on a free port."""
    http = make_server("127.0.0.1", 0, webhook_app, threaded=True)
    thread = serving(http)
    thread.start()
    yield f"http://127.0.0.1:{http.server_port}"
    http.shutdown()
    http.server_close()


def post(url: str, body: bytes) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=body, headers={"content-type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=60) as response:
        return response.status, json.loads(response.read())


@pytest.mark.parametrize("fixture, kind, answer, emails", [
    ("stk_success.json", "stk", {"ResultCode": 0, "ResultDesc": "Accepted"}, 1),
    ("c2b_confirmation_plain.json", "c2b-confirmation", {"ResultCode": 0, "ResultDesc": "Success"}, 1),
    ("b2c_result_success.json", "b2c-result", {"ResultCode": 0, "ResultDesc": "Accepted"}, 0),
])
def test_fifty_concurrent_copies_make_one_event(server, store, redis_client, fixture, kind, answer, emails):
    merchant, _ = merchant_with_endpoints(store, "http://127.0.0.1:9/a", "http://127.0.0.1:9/b")
    url = server + callback_url(merchant, kind)
    body = fixture_bytes(f"mpesa/{fixture}")
    barrier = threading.Barrier(COPIES)

    def one(_):
        barrier.wait()  # release every request at the same instant
        return post(url, body)

    with ThreadPoolExecutor(COPIES) as pool:
        answers = list(pool.map(one, range(COPIES)))
    assert answers == [(200, answer)] * COPIES
    with store.read() as session:
        assert session.scalar(select(func.count()).select_from(Event)) == 1
        per_endpoint = session.execute(select(Delivery.endpoint_id, func.count()).group_by(Delivery.endpoint_id)).all()
        assert sorted(n for _, n in per_endpoint) == [1, 1]
        assert session.scalar(select(func.count()).select_from(Email)) == emails
    queued = [d for k in redis_client.keys("dramatiq:delivery.*") if redis_client.type(k) == b"list"
              for d in queued_deliveries(redis_client, k.decode().removeprefix("dramatiq:"))]
    assert len(queued) == 2
