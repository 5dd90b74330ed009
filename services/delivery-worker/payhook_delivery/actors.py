"""Delivery actors: one per priority level, each on its own queue."""

from __future__ import annotations

import dramatiq

from payhook_shared.broker import RedisBroker
from payhook_shared.lazy import PerProcess
from payhook_shared.messages import DeliverWebhook
from payhook_shared.priority import DELIVERY, Priority
from payhook_shared.workers import declare_actors

from .delivery import deliver
from .runtime import Runtime


def declare(broker: RedisBroker, runtime: PerProcess[Runtime]) -> dict[Priority, dramatiq.Actor]:
    """Declare the delivery actors on ``broker``; each delivers with this process's ``runtime``."""
    return declare_actors(broker, DELIVERY, lambda kwargs: deliver(runtime.get(), DeliverWebhook.decode(kwargs)))
