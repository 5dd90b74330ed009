"""The sweeper on a real Redis and store: which due jobs it enqueues again, and which it leaves be."""

from __future__ import annotations

import datetime as dt
import time

from sqlalchemy import select

from factories import merchant_with_endpoints, record_payment
from payhook_shared.broker import create_broker
from payhook_shared.jobs import Periodic, Sweeper
from payhook_shared.messages import DeliverWebhook
from payhook_shared.priority import DELIVERY, Priority
from payhook_shared.store import Delivery
from support import wait_until


def _message(rows) -> DeliverWebhook:
    return DeliverWebhook(delivery_ids=tuple(row.id for row in rows), priority=Priority(rows[0].priority))


def _delivery(store) -> Delivery:
    with store.read() as session:
        return session.scalars(select(Delivery)).one()


def _sweeper(store, broker) -> Sweeper:
    """A sweeper with the default grace for fetched messages (60 s), and none for new ones."""
    return Sweeper(store, broker, Delivery, DELIVERY, _message, grace=0)


def test_message_fetched_but_never_received_is_enqueued_again(store, redis_url, redis_client):
    broker = create_broker(redis_url, middleware=[])
    merchant, _ = merchant_with_endpoints(store, "http://127.0.0.1:9/hooks")
    record_payment(store, broker, merchant.id, "mpesa/stk_success.json")
    job = _delivery(store)
    # A live worker's fetch ran in Redis but its reply was lost (Redis stopped before answering):
    # the id sits in that worker's ack set and its body in the queue's hash, but no worker holds it.
    worker = create_broker(redis_url, middleware=[])
    assert len(worker.do_fetch(job.queue_name, 10)) == 1
    assert redis_client.llen(f"dramatiq:{job.queue_name}") == 0
    sweeper = _sweeper(store, broker)
    now = dt.datetime.now(dt.timezone.utc)

    assert sweeper.run_once(now) == 0  # seen fetched: a worker may yet claim it
    assert sweeper.run_once(now + dt.timedelta(seconds=30)) == 0
    assert sweeper.run_once(now + dt.timedelta(seconds=61)) == 1

    again = _delivery(store)
    assert again.message_id != job.message_id
    assert redis_client.lrange(f"dramatiq:{job.queue_name}", 0, -1) == [again.message_id.encode()]


def test_message_waiting_in_its_queue_is_left_alone(store, redis_url, redis_client):
    broker = create_broker(redis_url, middleware=[])
    merchant, _ = merchant_with_endpoints(store, "http://127.0.0.1:9/hooks")
    record_payment(store, broker, merchant.id, "mpesa/stk_success.json")
    job = _delivery(store)
    broker.do_qsize(job.queue_name)  # a worker's heartbeat, so there are ack sets to look in
    sweeper = _sweeper(store, broker)
    now = dt.datetime.now(dt.timezone.utc)

    assert sweeper.run_once(now) == 0
    assert sweeper.run_once(now + dt.timedelta(hours=1)) == 0
    assert _delivery(store).message_id == job.message_id
    assert redis_client.lrange(f"dramatiq:{job.queue_name}", 0, -1) == [job.message_id.encode()]


def test_message_lost_from_redis_is_enqueued_again(store, redis_url, redis_client):
    broker = create_broker(redis_url, middleware=[])
    merchant, _ = merchant_with_endpoints(store, "http://127.0.0.1:9/hooks")
    record_payment(store, broker, merchant.id, "mpesa/stk_success.json")
    redis_client.flushall()

    assert _sweeper(store, broker).run_once() == 1
    job = _delivery(store)
    assert redis_client.lrange(f"dramatiq:{job.queue_name}", 0, -1) == [job.message_id.encode()]


def test_the_sweeper_rests_until_the_next_job_falls_due(store, redis_url):
    """Idle, it sleeps until the next due job; while one is due or claimed (it may be handed back), not at all."""
    broker = create_broker(redis_url, middleware=[])
    sweeper = _sweeper(store, broker)
    assert sweeper.idle_for() == float("inf")

    merchant, _ = merchant_with_endpoints(store, "http://127.0.0.1:9/hooks")
    record_payment(store, broker, merchant.id, "mpesa/stk_success.json")
    job = _delivery(store)
    now = dt.datetime.now(dt.timezone.utc)
    assert sweeper.idle_for(now) == 0.0  # due now
    with store.write() as session:
        session.get(Delivery, job.id).next_attempt_at = now + dt.timedelta(seconds=30)
    assert sweeper.idle_for(now) == 30.0
    with store.write() as session:
        session.get(Delivery, job.id).state = "sending"
    assert sweeper.idle_for(now) == 0.0


def test_an_idle_leader_sleeps_as_its_task_asks_within_bounds(redis_url):
    """With ``idle_interval`` the leader ticks as often as its task asks, between the two intervals."""
    client = create_broker(redis_url, middleware=[]).client
    ticks, asks = [], iter([None, 0.0, 100.0, 0.3])
    periodic = Periodic(client, "test-idle", 0.05, lambda: ticks.append(time.monotonic()) or next(asks, None),
                        idle_interval=0.3)
    periodic.start()
    try:
        wait_until(lambda: len(ticks) >= 5, timeout=10, what="five ticks")
    finally:
        periodic.stop()
    gaps = [round(b - a, 2) for a, b in zip(ticks, ticks[1:])]
    # None and 0 ask for the interval, 100 s is capped at idle_interval, 0.3 s is taken as asked.
    assert gaps[0] < 0.2 and gaps[1] < 0.2, gaps
    assert 0.28 <= gaps[2] < 0.45 and 0.28 <= gaps[3] < 0.45, gaps
