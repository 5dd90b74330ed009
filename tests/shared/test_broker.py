"""The broker on a real Redis: batch enqueue leaves Redis as Dramatiq's own enqueue does; consumers wait on wake-ups."""

from __future__ import annotations

import time

import dramatiq

from payhook_shared import jobs
from payhook_shared.broker import REDIS_ID, STOPPING_WAIT_SECONDS, create_broker
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


def _evalsha_calls(redis_client) -> int:
    return redis_client.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0)


def test_an_idle_consumer_waits_for_a_wake_up_not_a_timer(redis_url, redis_client):
    """Idle, a worker does not poll (one fetch per ``MAX_BLOCK_SECONDS`` at most); a message sent wakes it at once,
    and stopping it does not wait out a block."""
    broker = create_broker(redis_url, middleware=[])
    done = []

    @dramatiq.actor(broker=broker, actor_name="deliver", queue_name="delivery.normal")
    def deliver(**kwargs):
        done.append(time.monotonic())

    worker = dramatiq.Worker(broker, worker_threads=1, worker_timeout=1_000)
    worker.start()
    try:
        time.sleep(0.3)  # the consumer's first fetch finds nothing; it now blocks on the wake-up list
        before = _evalsha_calls(redis_client)
        time.sleep(2.0)
        assert _evalsha_calls(redis_client) - before <= 2  # 2 consumers (queue, delay queue); Dramatiq's: ~20
        sent = time.monotonic()
        broker.enqueue(dramatiq.Message(queue_name="delivery.normal", actor_name="deliver", args=(), kwargs={},
                                        options={REDIS_ID: "rid-wake"}))
        deadline = time.monotonic() + 3
        while not done and time.monotonic() < deadline:
            time.sleep(0.01)
        assert done and done[0] - sent < 0.5
    finally:
        stopping = time.monotonic()
        worker.stop()
    assert time.monotonic() - stopping < 1.5  # the worker threads' 1 s timeout, not the consumers' 4 s block


def test_a_full_consumer_fetches_again_as_soon_as_a_message_is_acknowledged(redis_url):
    """With every prefetched message in a thread, the consumer waits for an acknowledgement, not a timer."""
    broker = create_broker(redis_url, middleware=[])
    done = []

    @dramatiq.actor(broker=broker, actor_name="deliver", queue_name="delivery.normal")
    def deliver(**kwargs):
        time.sleep(0.02)
        done.append(1)

    broker.enqueue_many([dramatiq.Message(queue_name="delivery.normal", actor_name="deliver", args=(), kwargs={},
                                          options={REDIS_ID: f"rid-full-{i}"}) for i in range(30)])
    worker = dramatiq.Worker(broker, worker_threads=1, worker_timeout=1_000)  # prefetches 2 at a time
    started = time.monotonic()
    worker.start()
    try:
        while len(done) < 30 and time.monotonic() - started < 20:
            time.sleep(0.01)
        took = time.monotonic() - started  # before stop(), which waits out the worker threads' 1 s timeout
    finally:
        worker.stop()
    assert len(done) == 30
    assert took < 2  # 30 × 20 ms of work; timed waits would add up to seconds



def test_interrupting_a_consumer_while_redis_is_down_does_not_stop_the_stop(redis_url):
    """A worker stopping during a Redis outage still stops: the wake-up push is best effort."""
    broker = create_broker(redis_url, middleware=[])
    consumer = broker.consume("delivery.normal")
    broker.client.connection_pool.connection_kwargs["port"] = 1  # every new connection is refused
    broker.client.connection_pool.disconnect()
    consumer.interrupt()
    assert consumer._block == STOPPING_WAIT_SECONDS
