"""The broker's batch enqueue leaves Redis exactly as Dramatiq's own enqueue does, on a real Redis."""

from __future__ import annotations

import dramatiq

from payhook_shared import jobs
from payhook_shared.broker import REDIS_ID, create_broker
from payhook_shared.messages import DeliverWebhook
from payhook_shared.priority import Priority


def _planned(n: int, priority: Priority = Priority.NORMAL) -> list[dramatiq.Message]:
    return [jobs.plan(DeliverWebhook(delivery_ids=(f"dlv_{i}",), priority=priority)) for i in range(n)]


def _state(client, queue: str) -> tuple[list[bytes], dict[bytes, bytes]]:
    return client.lrange(f"dramatiq:{queue}", 0, -1), client.hgetall(f"dramatiq:{queue}.msgs")


def test_enqueue_many_matches_enqueue(redis_url, redis_client):
    broker = create_broker(redis_url, middleware=[])
    one_by_one, batch = _planned(3), _planned(3)
    for message in one_by_one:
        broker.enqueue(message)
    queue = one_by_one[0].queue_name
    expected_ids, expected_bodies = _state(redis_client, queue)
    redis_client.flushall()

    broker.enqueue_many(batch)

    ids, bodies = _state(redis_client, queue)
    assert ids == [m.options[REDIS_ID].encode() for m in batch]
    assert len(expected_ids) == 3
    assert {dramatiq.Message.decode(b).message_id for b in bodies.values()} == {m.message_id for m in batch}
    assert sorted(bodies) == sorted(ids)
    assert len(expected_bodies) == len(bodies)


def test_enqueue_many_reloads_a_lost_script(redis_url, redis_client):
    broker = create_broker(redis_url, middleware=[])
    broker.enqueue_many(_planned(1))
    redis_client.script_flush()  # as a Redis restart does

    messages = _planned(2, Priority.URGENT)
    broker.enqueue_many(messages)

    ids, _ = _state(redis_client, messages[0].queue_name)
    assert ids == [m.options[REDIS_ID].encode() for m in messages]


def test_enqueued_messages_are_consumed_by_a_worker(redis_url):
    broker = create_broker(redis_url, middleware=[])
    seen = []

    @dramatiq.actor(broker=broker, actor_name="deliver", queue_name="delivery.normal")
    def deliver(**kwargs):
        seen.append(kwargs["delivery_id"])

    messages = [dramatiq.Message(queue_name="delivery.normal", actor_name="deliver", args=(),
                                 kwargs={"delivery_id": f"dlv_{i}"}, options={REDIS_ID: f"rid-{i}"})
                for i in range(3)]
    broker.enqueue_many(messages)
    worker = dramatiq.Worker(broker, worker_threads=1, worker_timeout=50)
    worker.start()
    try:
        broker.join("delivery.normal", timeout=10_000)
        worker.join()
    finally:
        worker.stop()
    assert sorted(seen) == ["dlv_0", "dlv_1", "dlv_2"]
