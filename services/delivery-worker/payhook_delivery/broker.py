"""The delivery-worker's broker: Payhook's Redis broker with this worker's heartbeat and lifecycle."""

from __future__ import annotations

from payhook_shared.broker import RedisBroker
from payhook_shared.lazy import PerProcess
from payhook_shared.workers import WorkerRuntime, worker_broker

from .settings import Settings


def create_broker(settings: Settings, runtime: PerProcess[WorkerRuntime]) -> RedisBroker:
    """The broker the delivery actors are declared on; it starts and closes ``runtime`` with the worker."""
    return worker_broker("delivery-worker", settings, runtime,
                         heartbeat_timeout_ms=int(settings.heartbeat_timeout * 1000))
