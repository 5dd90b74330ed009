"""Endpoint health against a real receiver: circuit breaker, one email per incident, disabling."""

from __future__ import annotations

import datetime as dt
import threading

from sqlalchemy import select

from factories import fixture_bytes, merchant_with_endpoints, stk_url
from payhook_shared.store import Delivery, DeliveryAttempt, Email, Endpoint, JobState, Merchant
from support import Clock, wait_until


def post_payments(client, merchant, n: int) -> None:
    for i in range(n):
        body = fixture_bytes("mpesa/stk_success.json").replace(b"ws_CO_191220191020363925", f"ws_CO_h{i}".encode())
        assert client.post(stk_url(merchant), data=body, content_type="application/json").status_code == 200


def rows(store, model):
    with store.read() as session:
        return list(session.scalars(select(model)))


def settled(store, clock) -> bool:
    """No delivery under way or due: the worker has done all the clock allows."""
    return all(d.state != JobState.SENDING.value and (d.state != JobState.PENDING.value or d.next_attempt_at > clock())
               for d in rows(store, Delivery))


def test_receiver_down_then_back_gets_everything_once_and_one_failing_email(client, store, receiver,
                                                                            delivery_worker):
    up = threading.Event()
    receiver.respond = lambda req: (200, {}, b"ok") if up.is_set() else (503, {}, b"down")
    merchant, [endpoint] = merchant_with_endpoints(store, receiver.url)
    post_payments(client, merchant, 6)
    clock = Clock()  # after the callbacks, so their deliveries are due at once
    rt = delivery_worker(retry_schedule=(0.2,) * 30, retry_jitter=0.0, circuit_threshold=3, circuit_cooldown=0.5,
                         clock=clock)

    wait_until(lambda: rows(store, Endpoint)[0].circuit_open_until, what="circuit open")
    wait_until(lambda: settled(store, clock), what="every delivery waiting")
    failed_before = len(rows(store, DeliveryAttempt))
    assert 3 <= failed_before <= 6
    # While open, deliveries wait: however often the sweeper looks, nothing is attempted ...
    assert rt.sweeper.run_once() == 0 and len(rows(store, DeliveryAttempt)) == failed_before
    # ... and each cool-down lets exactly one half-open probe through.
    for probes in (1, 2):
        clock.advance(0.5)
        wait_until(lambda: len(rows(store, DeliveryAttempt)) == failed_before + probes and settled(store, clock),
                   what=f"half-open probe {probes}")
        assert len(rows(store, DeliveryAttempt)) == failed_before + probes

    up.set()
    clock.advance(0.5)  # the next probe succeeds and closes the circuit
    # The success is recorded first, the endpoint's health just after (PostgreSQL).
    wait_until(lambda: (rows(store, Endpoint)[0].consecutive_failures, rows(store, Endpoint)[0].circuit_open_until)
               == (0, None), what="circuit closed")
    clock.advance(0.5)  # those that lost the probe look again a cool-down later
    wait_until(lambda: all(d.state == JobState.DONE.value for d in rows(store, Delivery)), timeout=20,
               what="every delivery done")
    assert len({r.headers["webhook-id"] for r in receiver.received}) == 6
    successes = [a for a in rows(store, DeliveryAttempt) if a.category == "success"]
    assert len(successes) == 6  # each webhook-id answered 2xx exactly once
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
    post_payments(client, merchant, 1)
    clock = Clock()
    delivery_worker(retry_schedule=(0.3,) * 20, retry_jitter=0.0, circuit_threshold=100, disable_after=1.0,
                    clock=clock)
    for attempts, elapsed in ((1, 0), (2, 0.3), (3, 0.6)):  # failing, but for less than the window
        wait_until(lambda: len(rows(store, DeliveryAttempt)) == attempts and settled(store, clock),
                   what=f"attempt {attempts}")
        assert rows(store, Endpoint)[0].enabled, f"disabled after failing for {elapsed} s"
        clock.advance(0.3 if attempts < 3 else 0.4)
    wait_until(lambda: not rows(store, Endpoint)[0].enabled, what="endpoint disabled")
    assert len(rows(store, DeliveryAttempt)) == 4
    assert "failing continuously" in rows(store, Endpoint)[0].disabled_reason


def test_rate_limited_honours_retry_after(client, store, receiver, delivery_worker):
    answers = iter([(429, {"Retry-After": "1"}, b""), (200, {}, b"")])
    receiver.respond = lambda req: next(answers)
    merchant, _ = merchant_with_endpoints(store, receiver.url)
    post_payments(client, merchant, 1)
    clock = Clock()
    rt = delivery_worker(retry_schedule=(30,), retry_jitter=0.0, clock=clock)
    wait_until(lambda: settled(store, clock), what="the 429 recorded")
    [first] = rows(store, DeliveryAttempt)
    assert rows(store, Delivery)[0].next_attempt_at - first.started_at == dt.timedelta(seconds=1)  # not 30
    clock.advance(0.9)
    assert rt.sweeper.run_once() == 0  # not due before its Retry-After
    clock.advance(0.1)
    wait_until(lambda: rows(store, Delivery)[0].state == JobState.DONE.value, what="delivered after Retry-After")
    assert [a.status_code for a in rows(store, DeliveryAttempt)] == [429, 200]


def test_fast_profile_from_merchant_settings(client, store, receiver, delivery_worker):
    receiver.respond = lambda req: (500, {}, b"")
    merchant, _ = merchant_with_endpoints(store, receiver.url)
    with store.write() as session:
        session.get(Merchant, merchant.id).settings = {"retry": {"profile": "fast"}}
    post_payments(client, merchant, 1)
    clock = Clock()
    rt = delivery_worker(retry_jitter=0.0, circuit_threshold=100, clock=clock)
    for attempts, gap in ((1, 2), (2, 4), (3, 8)):
        wait_until(lambda: len(rows(store, DeliveryAttempt)) == attempts and settled(store, clock),
                   what=f"attempt {attempts}")
        clock.advance(gap - 0.1)
        assert rt.sweeper.run_once() == 0, f"retry {attempts} due before its {gap} s"
        clock.advance(0.1)
    wait_until(lambda: rows(store, Delivery)[0].state == JobState.DEAD.value, what="dead after fast profile")
    started = [a.started_at for a in sorted(rows(store, DeliveryAttempt), key=lambda a: a.number)]
    assert [(b - a).total_seconds() for a, b in zip(started, started[1:])] == [2, 4, 8]
    assert len(receiver.received) == 4
