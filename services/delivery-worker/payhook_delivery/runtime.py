"""What a worker process needs at hand: settings, store, broker, HTTP pool, sweeper.

Built lazily on first use, after Dramatiq has forked the process, so no
connection is ever shared across a fork. Tests ``install`` their own.
"""

from __future__ import annotations

import dataclasses
import time

import urllib3

from payhook_shared import retention
from payhook_shared.broker import RedisBroker
from payhook_shared.jobs import Periodic, Sweeper
from payhook_shared.lazy import PerProcess
from payhook_shared.metrics import HealthServer
from payhook_shared.messages import DeliverWebhook
from payhook_shared.priority import DELIVERY, Priority
from payhook_shared.store import Delivery, Store

from . import http, metrics
from .limits import Limiter
from .settings import Settings


def _message_for(delivery: Delivery) -> DeliverWebhook:
    return DeliverWebhook(delivery_id=delivery.id, event_id=delivery.event_id,
                          merchant_id=delivery.merchant_id, priority=Priority(delivery.priority))


@dataclasses.dataclass
class Runtime:
    """One process's shared resources."""

    settings: Settings
    store: Store
    broker: RedisBroker
    http: urllib3.PoolManager
    sweeper: Sweeper
    limiter: Limiter
    retention: Periodic | None
    health: HealthServer | None = None

    def start_background(self) -> None:
        """Start the sweeper and, when enabled, the retention purge."""
        self.sweeper.start()
        if self.retention:
            self.retention.start()

    def purge_once(self) -> retention.Purged:
        """Apply the retention policy once, and count what it removed."""
        s = self.settings
        started = time.monotonic()
        done = retention.purge(self.store, retention.Policy(s.retention_raw_payload_days, s.retention_events_days),
                               export_dir=s.retention_export_dir or None)
        metrics.purged(done, time.monotonic() - started, time.time())
        return done

    @classmethod
    def build(cls, settings: Settings, broker: RedisBroker) -> "Runtime":
        """Resources for ``settings``, enqueuing on ``broker``."""
        store = Store(settings.database_url, pool_size=settings.db_pool_size,
                      prepared=settings.db_prepared_statements)
        sweeper = Sweeper(store, broker, Delivery, DELIVERY, _message_for, interval=settings.sweep_interval,
                          fetched_grace=settings.lease_seconds)
        limiter = Limiter(broker.client, lease=settings.lease_seconds, busy_delay=settings.limit_retry_delay)
        rt = cls(settings, store, broker, http.pool(settings.threads), sweeper, limiter, None)
        if settings.retention_interval > 0:
            rt.retention = Periodic(broker.client, "retention", settings.retention_interval, rt.purge_once)
        return rt

    def serve_health(self, attempts: int = 1) -> None:
        """Serve /health, /health/ready and /metrics on ``HEALTH_PORT`` (once; never when it is 0)."""
        if self.health is None and self.settings.health_port:
            self.health = HealthServer(self.settings.health_port, {
                "database": self.store.ping, "redis": self.broker.client.ping}).start(attempts)

    def close(self) -> None:
        """Stop the background work and the health server, and release connections."""
        self.sweeper.stop()
        if self.retention:
            self.retention.stop()
        if self.health is not None:
            self.health.stop()
        self.http.clear()
        self.store.dispose()


def _from_environment() -> Runtime:
    from .broker import broker, settings
    return Runtime.build(settings, broker)


_runtime: PerProcess[Runtime] = PerProcess(_from_environment)

#: This process's runtime, built from the environment on first use.
get = _runtime.get
#: Replace this process's runtime (tests); ``None`` forgets it.
install = _runtime.install
