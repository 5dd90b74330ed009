"""The delivery worker, built in one place: settings → broker → runtime → actors."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from payhook_shared.lazy import PerProcess
from payhook_shared.store.models import utcnow
from payhook_shared.workers import Worker

from . import actors
from .broker import create_broker
from .runtime import Runtime
from .settings import Settings


def setup(settings: Settings | None = None, clock: Callable[[], dt.datetime] = utcnow) -> Worker[Runtime]:
    """Build the delivery worker from ``settings`` (the environment when omitted); nothing connects yet.

    The runtime (store, HTTP pool, sweeper) is built lazily, after Dramatiq has forked, so no connection is
    ever shared across a fork. ``clock`` is the time retries, leases and circuits are judged by: the wall
    clock, or one a test moves.
    """
    settings = settings or Settings.from_env()
    runtime: PerProcess[Runtime] = PerProcess(lambda: Runtime.build(settings, broker, clock))
    broker = create_broker(settings, runtime)
    return Worker(settings, broker, runtime, actors.declare(broker, runtime))
