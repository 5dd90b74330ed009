"""Delivery actors: one per priority level, each on its own queue."""

from __future__ import annotations

import dramatiq

from payhook_shared.broker import RedisBroker
from payhook_shared.lazy import PerProcess
from payhook_shared import replays
from payhook_shared.messages import DeliverWebhook, RunReplay
from payhook_shared.priority import DELIVERY, Priority
from payhook_shared.workers import ACTOR_OPTIONS, declare_actors

from .delivery import deliver
from .runtime import Runtime


def declare(broker: RedisBroker, runtime: PerProcess[Runtime]) -> dict[Priority, dramatiq.Actor]:
    """Declare the delivery actors on ``broker``; each delivers with this process's ``runtime``.

    The replay actors (one per delivery queue, see ``RunReplay``) are declared beside them; the delivery
    actors are returned.
    """
    declare_replay_actors(broker, runtime)
    return declare_actors(broker, DELIVERY, lambda kwargs: deliver(runtime.get(), DeliverWebhook.decode(kwargs)))


def declare_replay_actors(broker: RedisBroker, runtime: PerProcess[Runtime]) -> dict[Priority, dramatiq.Actor]:
    """One replay actor per delivery queue, each running one batch of the replay its message names."""
    def actor_for(priority: Priority) -> dramatiq.Actor:
        sample = RunReplay(replay_id="-", merchant_id="-", priority=priority)

        def fn(**kwargs: object) -> None:
            rt = runtime.get()
            replays.run(rt.store, rt.broker, RunReplay.decode(kwargs).replay_id)

        fn.__name__ = sample.actor_name
        return dramatiq.actor(fn, broker=broker, actor_name=sample.actor_name, queue_name=sample.queue_name,
                              priority=int(priority), **ACTOR_OPTIONS)

    return {p: actor_for(p) for p in Priority}
