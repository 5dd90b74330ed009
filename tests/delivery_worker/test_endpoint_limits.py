"""Per-endpoint rate limit and concurrency cap: the Redis limiter, handing claims back, real workers."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import threading
import time

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from sqlalchemy import select, update

from factories import fixture_bytes, merchant_with_endpoints, stk_url
from payhook_delivery.limits import Limiter
from payhook_shared.jobs import claim, release
from payhook_shared.store import Delivery, DeliveryAttempt, Endpoint, JobState
from payhook_shared.store.models import utcnow
from support import RedisServer, free_port, wait_until


def limited(store, endpoint, **limits) -> None:
    with store.write() as session:
        session.execute(update(Endpoint).where(Endpoint.id == endpoint.id).values(**limits))


def post_payments(client, merchant, count: int) -> None:
    for n in range(count):
        body = fixture_bytes("mpesa/stk_success.json").replace(b"ws_CO_191220191020363925", f"ws_CO_{n}".encode())
        assert client.post(stk_url(merchant), data=body, content_type="application/json").status_code == 200


def deliveries(store) -> list[Delivery]:
    with store.read() as session:
        return list(session.scalars(select(Delivery)))


def all_done(store, count):
    rows = deliveries(store)
    return len(rows) == count and all(d.state == JobState.DONE.value for d in rows)


def attempt_count(store) -> int:
    with store.read() as session:
        return len(session.scalars(select(DeliveryAttempt)).all())


class TestLimiter:
    def test_no_limits_need_no_slot(self, redis_client):
        limiter = Limiter(redis_client, lease=5, busy_delay=0.5)
        assert limiter.acquire("ep_x", None, None).granted
        assert redis_client.keys("payhook:limit:*") == []

    def test_concurrency_cap_until_a_slot_is_returned(self, redis_client):
        limiter = Limiter(redis_client, lease=5, busy_delay=0.5)
        first, second = limiter.acquire("ep_a", None, 2), limiter.acquire("ep_a", None, 2)
        assert first.granted and second.granted
        refused = limiter.acquire("ep_a", None, 2)
        assert not refused.granted and 0.5 <= refused.wait <= 0.63
        assert limiter.acquire("ep_b", None, 2).granted  # other endpoints are unaffected
        limiter.release("ep_a", first)
        assert limiter.acquire("ep_a", None, 2).granted

    def test_a_dead_workers_slot_frees_itself_after_the_lease(self, redis_client):
        limiter = Limiter(redis_client, lease=0.3, busy_delay=0.1)
        assert limiter.acquire("ep_a", None, 1).granted  # never released: its worker "died"
        assert not limiter.acquire("ep_a", None, 1).granted
        time.sleep(0.35)
        assert limiter.acquire("ep_a", None, 1).granted

    def test_rate_limit_reports_when_the_window_has_room(self, redis_client):
        limiter = Limiter(redis_client, lease=5, busy_delay=0.1)
        assert all(limiter.acquire("ep_r", 3, None).granted for _ in range(3))
        refused = limiter.acquire("ep_r", 3, None)
        assert not refused.granted and 0 < refused.wait <= 1.25
        time.sleep(refused.wait)
        assert limiter.acquire("ep_r", 3, None).granted

    def test_slot_is_returned_when_the_block_fails(self, redis_client):
        limiter = Limiter(redis_client, lease=5, busy_delay=0.1)
        with pytest.raises(RuntimeError):
            with limiter.slot("ep_s", None, 1) as grant:
                assert grant.granted
                raise RuntimeError("attempt crashed")
        assert limiter.acquire("ep_s", None, 1).granted

    def test_a_slot_redis_cannot_take_back_does_not_fail_the_attempt(self, tmp_path):
        # A Redis of its own, stopped while the attempt is under way (the session's serves other tests).
        server = RedisServer(free_port(), tmp_path / "redis")
        server.start()
        client = redis.Redis.from_url(server.url, retry=Retry(NoBackoff(), 0))
        limiter = Limiter(client, lease=5, busy_delay=0.1)
        try:
            # Leaving the block must not raise: deliver() records the attempt's outcome after it.
            with limiter.slot("ep_gone", None, 1) as grant:
                assert grant.granted
                server.stop()
        finally:
            server.stop()
            client.close()


def test_release_hands_a_claim_back_without_spending_an_attempt(client, store):
    merchant, _ = merchant_with_endpoints(store, "http://127.0.0.1:9/unused")
    post_payments(client, merchant, 1)
    [job] = deliveries(store)
    with store.write() as session:
        assert claim(session, Delivery, job.id, dt.timedelta(seconds=30))
    retry_at = utcnow() + dt.timedelta(seconds=2)
    with store.write() as session:
        assert release(session, Delivery, job.id, retry_at)
    [back] = deliveries(store)
    assert (back.state, back.attempts, back.message_id, back.lease_until) == (JobState.PENDING.value, 0, None, None)
    assert abs((back.next_attempt_at - retry_at).total_seconds()) < 0.01
    with store.write() as session:
        assert not release(session, Delivery, job.id, retry_at)  # not claimed any more
        assert not claim(session, Delivery, job.id, dt.timedelta(seconds=30))  # not due yet


def test_max_in_flight_caps_concurrent_requests_across_worker_threads(client, store, receiver, delivery_worker):
    lock, state = threading.Lock(), {"now": 0, "peak": 0}

    def slow(req):
        with lock:
            state["now"] += 1
            state["peak"] = max(state["peak"], state["now"])
        time.sleep(0.15)  # long beside the workers' dispatch, so overlapping attempts would show
        with lock:
            state["now"] -= 1
        return 200, {}, b""

    receiver.respond = slow
    merchant, [endpoint] = merchant_with_endpoints(store, receiver.url)
    limited(store, endpoint, max_in_flight=1)
    delivery_worker(threads=4, limit_retry_delay=0.1)
    post_payments(client, merchant, 6)
    got = receiver.wait_for(6, timeout=30)
    wait_until(lambda: all_done(store, 6), timeout=10, what="all delivered")
    assert state["peak"] == 1
    assert len({r.headers["webhook-id"] for r in got}) == 6 == len(got)
    assert attempt_count(store) == 6 and all(d.attempts == 1 for d in deliveries(store))


def test_rate_limit_spreads_deliveries_over_time(client, store, receiver, delivery_worker):
    merchant, [endpoint] = merchant_with_endpoints(store, receiver.url)
    limited(store, endpoint, rate_limit_per_second=5)
    delivery_worker(threads=4)
    post_payments(client, merchant, 10)  # two windows' worth: enough for the cap to show
    got = receiver.wait_for(10, timeout=30)
    wait_until(lambda: all_done(store, 10), timeout=10, what="all delivered")
    times = sorted(r.at for r in got)
    assert times[-1] - times[0] >= 0.9
    # Never more than 5 requests in any one-second window (a little slack for two clocks).
    assert all(sum(1 for t in times if start <= t < start + 0.95) <= 5 for start in times)
    assert len({r.headers["webhook-id"] for r in got}) == 10 == len(got)
    assert attempt_count(store) == 10 and all(d.attempts == 1 for d in deliveries(store))


@pytest.mark.slow
def test_max_in_flight_holds_across_worker_processes(client, store, receiver, database_url, redis_url, tmp_path):
    lock, state = threading.Lock(), {"now": 0, "peak": 0}

    def slow(req):
        with lock:
            state["now"] += 1
            state["peak"] = max(state["peak"], state["now"])
        time.sleep(0.2)
        with lock:
            state["now"] -= 1
        return 200, {}, b""

    receiver.respond = slow
    merchant, [endpoint] = merchant_with_endpoints(store, receiver.url)
    limited(store, endpoint, max_in_flight=1)
    post_payments(client, merchant, 6)
    env = {**os.environ, "DATABASE_URL": database_url, "REDIS_URL": redis_url, "ENDPOINT_ALLOWLIST": "127.0.0.0/8",
           "SWEEP_INTERVAL": "0.2", "LIMIT_RETRY_DELAY": "0.1", "LOG_FORMAT": "text"}
    dramatiq = os.path.join(os.path.dirname(sys.executable), "dramatiq")
    with open(tmp_path / "worker.log", "wb") as log:
        workers = subprocess.Popen([dramatiq, "payhook_delivery.app:setup", "--processes", "2", "--threads", "3"],
                                   env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            got = receiver.wait_for(6, timeout=40)
            wait_until(lambda: all_done(store, 6), timeout=10, what="all delivered")
        finally:
            workers.terminate()
            workers.wait(20)
    assert state["peak"] == 1
    assert len({r.headers["webhook-id"] for r in got}) == 6 == len(got)
    assert attempt_count(store) == 6
