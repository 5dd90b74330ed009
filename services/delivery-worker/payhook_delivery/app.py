"""The delivery worker, built in one place: settings → broker → runtime → actors."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable

import dramatiq

from payhook_shared.broker import RedisBroker
from payhook_shared.lazy import PerProcess
from payhook_shared.priority import Priority
from payhook_shared.store.models import utcnow

from . import actors
from .broker import create_broker
from .runtime import Runtime
from .settings import Settings


@dataclasses.dataclass(frozen=True)
class Worker:
    """A configured delivery worker: its broker, its actors, and the runtime each process builds on first use."""

    settings: Settings
    broker: RedisBroker
    runtime: PerProcess[Runtime]
    actors: dict[Priority, dramatiq.Actor]


def setup(settings: Settings | None = None, clock: Callable[[], dt.datetime] = utcnow) -> Worker:
    """Build the delivery worker from ``settings`` (the environment when omitted); nothing connects yet.

    The runtime (store, HTTP pool, sweeper) is built lazily, after Dramatiq has forked, so no connection is
    ever shared across a fork. ``clock`` is the time retries, leases and circuits are judged by: the wall
    clock, or one a test moves.
    """
    settings = settings or Settings.from_env()
    runtime: PerProcess[Runtime] = PerProcess(lambda: Runtime.build(settings, broker, clock))
    broker = create_broker(settings, runtime)
    return Worker(settings, broker, runtime, actors.declare(broker, runtime))
