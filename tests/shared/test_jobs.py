"""The sweeper on a real Redis and store: which due jobs it enqueues again, and which it leaves be."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select

from factories import merchant_with_endpoints, record_payment
from payhook_shared.broker import create_broker
from payhook_shared.jobs import Sweeper
from payhook_shared.messages import DeliverWebhook
from payhook_shared.priority import DELIVERY, Priority
from payhook_shared.store import Delivery


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
