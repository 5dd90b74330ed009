"""Delivery actors: one per priority level, each on its own queue.

Dramatiq orders only messages a worker has already fetched, so real priority
needs separate queues; each level's actor consumes its own.
"""

from __future__ import annotations

from collections.abc import Callable

import dramatiq

from payhook_shared.messages import DeliverWebhook
from payhook_shared.priority import DELIVERY, Priority, actor_name, queue_name

from . import runtime
from .broker import broker
from .delivery import deliver

# Retries are the store's business (see delivery.py), never Dramatiq's.
ACTOR_OPTIONS = {"max_retries": 0, "time_limit": 120_000}


def _actor_for(priority: Priority) -> dramatiq.Actor:
    def handle(**kwargs: object) -> None:
        deliver(runtime.get(), DeliverWebhook.decode(kwargs))

    handle.__name__ = actor_name(DELIVERY, priority)
    return dramatiq.actor(
        handle, broker=broker, actor_name=actor_name(DELIVERY, priority),
        queue_name=queue_name(DELIVERY, priority), priority=int(priority), **ACTOR_OPTIONS,
    )


ACTORS: dict[Priority, Callable] = {p: _actor_for(p) for p in Priority}
