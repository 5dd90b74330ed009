"""The Redis broker every service uses, and what the store needs to know of it.

The only change from Dramatiq's broker: a message may arrive with its Redis id
already chosen. The store records that id in the same transaction that creates
the job, so a sweeper can later ask Redis whether the job's message still
exists — and enqueue it again if Redis lost it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker as _DramatiqRedisBroker
from dramatiq.common import current_millis

REDIS_ID = "redis_message_id"


def with_redis_id(message: dramatiq.Message) -> dramatiq.Message:
    """``message`` with a fresh Redis id fixed in its options."""
    return message.copy(options={REDIS_ID: str(uuid.uuid4())})


class RedisBroker(_DramatiqRedisBroker):
    """Dramatiq's Redis broker, honouring a Redis id chosen before enqueue."""

    def enqueue(self, message: dramatiq.Message, *, delay: int | None = None) -> dramatiq.Message:
        """Enqueue ``message``; keep its preset Redis id when it has one and is not delayed."""
        if delay is not None or REDIS_ID not in message.options:
            return super().enqueue(message, delay=delay)
        self.emit_before("enqueue", message, delay)
        self.do_enqueue(message.queue_name, message.options[REDIS_ID], message.encode())
        self.emit_after("enqueue", message, delay)
        return message

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


def create_broker(url: str, *, heartbeat_timeout_ms: int = 30_000, middleware: list | None = None) -> RedisBroker:
    """A broker on ``url``.

    ``heartbeat_timeout_ms`` defaults to half of Dramatiq's minute, so messages
    held by a killed worker return to their queue sooner; it must stay above the
    longest job (a delivery attempt's 15 s), because a worker whose threads are
    all busy sends no heartbeat until one finishes.
    """
    return RedisBroker(url=url, heartbeat_timeout=heartbeat_timeout_ms, middleware=middleware)
