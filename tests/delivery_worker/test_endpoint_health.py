"""Endpoint health against a real receiver: circuit breaker, one email per incident, disabling."""

from __future__ import annotations

import threading
import time

from sqlalchemy import select

from factories import fixture_bytes, merchant_with_endpoints, stk_url
from payhook_shared.store import Delivery, DeliveryAttempt, Email, Endpoint, JobState, Merchant
from support import wait_until


def post_payments(client, merchant, n: int) -> None:
    for i in range(n):
        body = fixture_bytes("mpesa/stk_success.json").replace(b"ws_CO_191220191020363925", f"ws_CO_h{i}".encode())
        assert client.post(stk_url(merchant), data=body, content_type="application/json").status_code == 200


def rows(store, model):
    with store.read() as session:
        return list(session.scalars(select(model)))


def test_receiver_down_then_back_gets_everything_once_and_one_failing_email(client, store, receiver,
                                                                            delivery_worker):
    up = threading.Event()
    receiver.respond = lambda req: (200, {}, b"ok") if up.is_set() else (503, {}, b"down")
    merchant, [endpoint] = merchant_with_endpoints(store, receiver.url)
    delivery_worker(retry_schedule=(0.2,) * 30, retry_jitter=0.0, circuit_threshold=3, circuit_cooldown=0.5)
    post_payments(client, merchant, 6)

    wait_until(lambda: rows(store, Endpoint)[0].circuit_open_until, what="circuit open")
    time.sleep(1.5)
    failed_while_open = len(rows(store, DeliveryAttempt))
    # While open, deliveries wait: at most one half-open probe per cool-down spends an attempt.
    assert failed_while_open <= 3 + 6 + 4

    up.set()
    wait_until(lambda: all(d.state == JobState.DONE.value for d in rows(store, Delivery)), timeout=20,
               what="every delivery done")
    assert len({r.headers["webhook-id"] for r in receiver.received}) == 6
    successes = [a for a in rows(store, DeliveryAttempt) if a.category == "success"]
    assert len(successes) == 6  # each webhook-id answered 2xx exactly once
    # The success that closes the circuit is recorded first, the endpoint's health just after (PostgreSQL).
    wait_until(lambda: (rows(store, Endpoint)[0].consecutive_failures, rows(store, Endpoint)[0].circuit_open_until)
               == (0, None), what="circuit closed")
    emails = [e for e in rows(store, Email) if e.template == "endpoint_failing"]
    assert len(emails) == 1 and emails[0].recipients == ["merchant@example.test"]


def test_gone_disables_the_endpoint_and_keeps_the_rest_for_recovery(client, store, receiver, delivery_worker):
    receiver.respond = lambda req: (410, {}, b"gone")
    merchant, _ = merchant_with_endpoints(store, receiver.url)
    delivery_worker(retry_schedule=(0.2,), retry_jitter=0.0)
    post_payments(client, merchant, 3)
    wait_until(lambda: all(d.state == JobState.DEAD.value for d in rows(store, Delivery)), what="all dead")
    # On PostgreSQL the attempt is recorded first and the endpoint's health just after, in its own statement.
    wait_until(lambda: not rows(store, Endpoint)[0].enabled, what="endpoint disabled")
    assert "410" in rows(store, Endpoint)[0].disabled_reason
    categories = sorted(d.last_category for d in rows(store, Delivery))
    assert categories.count("gone") >= 1 and set(categories) <= {"gone", "disabled"}
    assert [e.template for e in rows(store, Email) if e.template.startswith("endpoint")] == ["endpoint_disabled"]


def test_continuous_failure_past_the_window_disables(client, store, receiver, delivery_worker):
    receiver.respond = lambda req: (500, {}, b"")
    merchant, _ = merchant_with_endpoints(store, receiver.url)
    delivery_worker(retry_schedule=(0.3,) * 20, retry_jitter=0.0, circuit_threshold=100, disable_after=1.0)
    post_payments(client, merchant, 1)
    wait_until(lambda: not rows(store, Endpoint)[0].enabled, timeout=15, what="endpoint disabled")
    assert "failing continuously" in rows(store, Endpoint)[0].disabled_reason


def test_rate_limited_honours_retry_after(client, store, receiver, delivery_worker):
    answers = iter([(429, {"Retry-After": "1"}, b""), (200, {}, b"")])
    receiver.respond = lambda req: next(answers)
    merchant, _ = merchant_with_endpoints(store, receiver.url)
    delivery_worker(retry_schedule=(30,), retry_jitter=0.0)
    post_payments(client, merchant, 1)
    first, second = receiver.wait_for(2, timeout=10)
    assert 0.9 <= second.at - first.at < 5


def test_fast_profile_from_merchant_settings(client, store, receiver, delivery_worker):
    receiver.respond = lambda req: (500, {}, b"")
    merchant, _ = merchant_with_endpoints(store, receiver.url)
    with store.write() as session:
        session.get(Merchant, merchant.id).settings = {"retry": {"profile": "fast"}}
    delivery_worker(retry_jitter=0.0, circuit_threshold=100)
    post_payments(client, merchant, 1)
    got = receiver.wait_for(4, timeout=25)
    gaps = [round(b.at - a.at) for a, b in zip(got, got[1:])]
    assert gaps == [2, 4, 8]
    wait_until(lambda: rows(store, Delivery)[0].state == JobState.DEAD.value, what="dead after fast profile")
