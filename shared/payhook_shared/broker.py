"""The Redis broker every service uses, and what the store needs to know of it.

Two changes from Dramatiq's broker. A message may arrive with its Redis id
already chosen: the store records that id in the same transaction that creates
the job, so a sweeper can later ask Redis whether the job's message still
exists — and enqueue it again if Redis lost it. And an idle consumer sleeps in
``BLPOP`` on its queue's wake-up list, which every enqueue pushes to, instead of
polling: a message is fetched the moment it is sent, and an idle worker costs
nothing but one wake-up per ``MAX_BLOCK_SECONDS``.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterable, Sequence

import dramatiq
import redis
from dramatiq.broker import MessageProxy
from dramatiq.brokers.redis import RedisBroker as _DramatiqRedisBroker
from dramatiq.brokers.redis import _RedisConsumer
from dramatiq.common import current_millis
from dramatiq.errors import ConnectionClosed

REDIS_ID = "redis_message_id"
# Wake-up tokens kept per queue: enough to wake every consumer of a burst, few enough to cost nothing.
WAKE_TOKENS = 64
# The longest BLPOP: inside redis-py's 5 s socket timeout, which a blocking command does not extend.
MAX_BLOCK_SECONDS = 4.0
# How a consumer waits once its worker is stopping: briefly, so stop() never waits out a block.
STOPPING_WAIT_SECONDS = 0.05


def with_redis_id(message: dramatiq.Message) -> dramatiq.Message:
    """``message`` with a fresh Redis id fixed in its options."""
    return message.copy(options={REDIS_ID: str(uuid.uuid4())})


class RedisBroker(_DramatiqRedisBroker):
    """Dramatiq's Redis broker, honouring a Redis id chosen before enqueue."""

    def enqueue(self, message: dramatiq.Message, *, delay: int | None = None) -> dramatiq.Message:
        """Enqueue ``message``; keep its preset Redis id when it has one and is not delayed."""
        if delay is not None or REDIS_ID not in message.options:
            message = super().enqueue(message, delay=delay)
        else:
            self.emit_before("enqueue", message, delay)
            self.do_enqueue(message.queue_name, message.options[REDIS_ID], message.encode())
            self.emit_after("enqueue", message, delay)
        if delay is None:
            pipe = self.client.pipeline(transaction=False)
            self._wake(pipe, message.queue_name)
            pipe.execute()
        return message

    def wake_key(self, queue_name: str) -> str:
        """The list an idle consumer of ``queue_name`` blocks on, and each enqueue pushes to."""
        # Outside Dramatiq's own keys (``<namespace>:…``), so nothing that lists its queues mistakes it for one.
        return f"{self.namespace}-wake:{queue_name}"

    def _wake(self, pipe: redis.client.Pipeline, queue_name: str) -> None:
        pipe.lpush(self.wake_key(queue_name), 1)
        pipe.ltrim(self.wake_key(queue_name), 0, WAKE_TOKENS - 1)

    def emit_before(self, signal: str, *args, **kwargs) -> None:
        """Dramatiq's hook dispatch; a stopping worker's consumers are first woken and told to stop blocking."""
        if signal == "worker_shutdown" and args:
            for thread in getattr(args[0], "consumers", {}).values():
                if isinstance(thread.consumer, _WakingConsumer):
                    thread.consumer.interrupt()
        super().emit_before(signal, *args, **kwargs)

    def consume(self, queue_name: str, prefetch: int = 1, timeout: int = 5000) -> "_WakingConsumer":
        """A consumer of ``queue_name`` that waits for wake-ups, not a timer, when it has nothing to do."""
        return _WakingConsumer(self, queue_name, prefetch, timeout)

    def enqueue_many(self, messages: Sequence[dramatiq.Message],
                     publish: Sequence[tuple[str, str]] = ()) -> None:
        """Enqueue messages whose Redis ids are preset, and publish ``(channel, text)`` notices, in one round trip.

        Each runs Dramatiq's own enqueue script, with the arguments its
        ``enqueue`` gives it (pinned with Dramatiq's version in constraints.txt),
        in one pipeline. If Redis has lost the script (a restart), they go one by
        one through ``enqueue``, which loads it again (the notices went with the
        pipeline: Redis runs every command of it before reporting an error).
        """
        pipe = self.client.pipeline(transaction=False)
        for channel, text in publish:
            pipe.publish(channel, text)
        sha = self.scripts["dispatch"].sha
        for message in messages:
            self.emit_before("enqueue", message, None)
            pipe.evalsha(sha, 1, self.namespace, "enqueue", current_millis(), message.queue_name, self.broker_id,
                         self.heartbeat_timeout, self.dead_message_ttl, self._should_do_maintenance("enqueue"),
                         self._max_unpack_size(), message.options[REDIS_ID], message.encode())
        for queue_name in dict.fromkeys(m.queue_name for m in messages):
            self._wake(pipe, queue_name)
        try:
            pipe.execute()
        except redis.exceptions.NoScriptError:
            for message in messages:
                self.enqueue(message)
            return
        for message in messages:
            self.emit_after("enqueue", message, None)

    def existing(self, jobs: Sequence[tuple[str, str]]) -> list[bool]:
        """For each ``(queue_name, redis_id)``, whether Redis still holds that message."""
        if not jobs:
            return []
        pipe = self.client.pipeline(transaction=False)
        for queue, redis_id in jobs:
            pipe.hexists(f"{self.namespace}:{queue}.msgs", redis_id)
        return [bool(x) for x in pipe.execute()]

    def fetched(self, jobs: Sequence[tuple[str, str]]) -> list[bool]:
        """For each ``(queue_name, redis_id)``, whether a worker has fetched that message and not acknowledged it.

        Dramatiq keeps a fetched message in its hash and notes its id in the
        fetching worker's ack set until the worker acknowledges it.
        """
        if not jobs:
            return []
        workers = [w.decode() for w in self.client.zrange(f"{self.namespace}:__heartbeats__", 0, -1)]
        if not workers:
            return [False] * len(jobs)
        pipe = self.client.pipeline(transaction=False)
        for queue, redis_id in jobs:
            for worker in workers:
                pipe.sismember(f"{self.namespace}:__acks__.{worker}.{queue}", redis_id)
        found = pipe.execute()
        return [any(found[i * len(workers):(i + 1) * len(workers)]) for i in range(len(jobs))]

    def queue_sizes(self, queues: Iterable[str]) -> dict[str, int]:
        """Messages waiting (not yet fetched) in each queue."""
        names = list(queues)
        pipe = self.client.pipeline(transaction=False)
        for queue in names:
            pipe.llen(f"{self.namespace}:{queue}")
        return dict(zip(names, pipe.execute()))


class _WakingConsumer(_RedisConsumer):
    """Dramatiq's Redis consumer, waiting on wake-ups instead of sleeping between polls.

    With nothing to fetch it blocks in ``BLPOP`` on the queue's wake-up list;
    with every prefetched message still in a worker thread it waits for one to
    be acknowledged. Either wait ends after ``MAX_BLOCK_SECONDS`` (or a third of
    the heartbeat timeout, as each fetch is the worker's heartbeat) at the latest;
    a stopping worker interrupts it (``RedisBroker.emit_before``). Payhook sends
    no delayed messages, so none waits on this.
    """

    def __init__(self, broker: RedisBroker, queue_name: str, prefetch: int, timeout: int):
        super().__init__(broker, queue_name, prefetch, timeout)
        self._wake_key = broker.wake_key(queue_name)
        self._freed = threading.Event()
        # This consumer's own list beside the queue's: a token there wakes this consumer and no other.
        self._own_key = f"{self._wake_key}:{uuid.uuid4().hex}"
        self._block = min(MAX_BLOCK_SECONDS, broker.heartbeat_timeout / 3000)

    def interrupt(self) -> None:
        """End the current wait now, and wait only briefly from now on: the worker is stopping."""
        self._block = STOPPING_WAIT_SECONDS
        self._freed.set()
        try:
            pipe = self.broker.client.pipeline(transaction=False)
            pipe.lpush(self._own_key, 1)
            pipe.expire(self._own_key, 10)
            pipe.execute()
        except redis.RedisError:  # Redis down: no block is under way to end, and the stop must go on
            pass

    def ack(self, message: MessageProxy) -> None:
        try:
            super().ack(message)
        finally:
            self._freed.set()

    def nack(self, message: MessageProxy) -> None:
        try:
            super().nack(message)
        finally:
            self._freed.set()

    def __next__(self) -> MessageProxy | None:
        try:
            while True:
                if self.message_cache:
                    data = self.message_cache.pop(0)
                    if data is None:  # Dramatiq's fetch may return a hole for a message gone meanwhile
                        continue
                    message = dramatiq.Message.decode(data)
                    self.queued_message_ids.add(message.message_id)
                    return MessageProxy(message)
                self._freed.clear()
                room = self.prefetch - self.outstanding_message_count
                if room <= 0:
                    self._freed.wait(self._block)
                    return None
                self.message_cache = self.broker.do_fetch(self.queue_name, room)
                if not self.message_cache:
                    self.broker.client.blpop([self._wake_key, self._own_key], timeout=self._block)
                    return None
        except redis.ConnectionError as exc:
            raise ConnectionClosed(exc) from None


def create_broker(url: str, *, heartbeat_timeout_ms: int = 30_000, middleware: list | None = None) -> RedisBroker:
    """A broker on ``url``.

    ``heartbeat_timeout_ms`` defaults to half of Dramatiq's minute, so messages
    held by a killed worker return to their queue sooner; it must stay above the
    longest job (a delivery attempt's 15 s), because a worker whose threads are
    all busy sends no heartbeat until one finishes.
    """
    return RedisBroker(url=url, heartbeat_timeout=heartbeat_timeout_ms, middleware=middleware)
