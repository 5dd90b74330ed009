"""The mail worker, built in one place: settings → broker → runtime → actors."""

from __future__ import annotations

from payhook_shared.lazy import PerProcess
from payhook_shared.workers import Worker

from . import actors
from .broker import create_broker
from .runtime import Runtime
from .settings import Settings


def setup(settings: Settings | None = None) -> Worker[Runtime]:
    """Build the mail worker from ``settings`` (the environment when omitted); nothing connects yet.

    ``dramatiq payhook_mail.app:setup`` calls it in each worker process. The runtime (store, transport,
    sweeper, alert check) is built lazily, after Dramatiq has forked, so no connection is shared across a fork.
    """
    settings = settings or Settings.from_env()
    runtime: PerProcess[Runtime] = PerProcess(lambda: Runtime.build(settings, broker))
    broker = create_broker(settings, runtime)
    return Worker(settings, broker, runtime, actors.declare(broker, runtime))
