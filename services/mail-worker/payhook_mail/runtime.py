"""What a mail-worker process needs at hand: settings, store, broker, transport, templates, sweeper, alerts.

Built lazily on first use, after Dramatiq has forked the process. Tests ``install`` their own.
"""

from __future__ import annotations

import dataclasses

import jinja2

from payhook_shared import notices
from payhook_shared.broker import RedisBroker
from payhook_shared.lazy import PerProcess
from payhook_shared.jobs import Sweeper
from payhook_shared.metrics import HealthServer
from payhook_shared.priority import MAIL
from payhook_shared.store import Email, Store

from . import render, transport
from .alerts import AlertLoop
from .settings import Settings


@dataclasses.dataclass
class Runtime:
    """One process's shared resources."""

    settings: Settings
    store: Store
    broker: RedisBroker
    transport: transport.Transport
    templates: jinja2.Environment
    sweeper: Sweeper
    alerts: AlertLoop = dataclasses.field(init=False)
    health: HealthServer | None = None

    def __post_init__(self) -> None:
        self.alerts = AlertLoop(self)

    @classmethod
    def build(cls, settings: Settings, broker: RedisBroker) -> "Runtime":
        """Resources for ``settings``, enqueuing on ``broker``."""
        store = Store(settings.database_url, pool_size=settings.db_pool_size,
                      prepared=settings.db_prepared_statements)
        sweeper = Sweeper(store, broker, Email, MAIL, notices.message_for, interval=settings.sweep_interval,
                          fetched_grace=settings.lease_seconds)
        mail = transport.from_settings(settings)
        return cls(settings, store, broker, mail, render.environment(), sweeper)

    def serve_health(self, attempts: int = 1) -> None:
        """Serve /health, /health/ready and /metrics on ``HEALTH_PORT`` (once; never when it is 0)."""
        if self.health is None and self.settings.health_port:
            self.health = HealthServer(self.settings.health_port, {
                "database": self.store.ping, "redis": self.broker.client.ping}).start(attempts)

    def close(self) -> None:
        """Stop the sweeper, the alert check and the health server, and release connections."""
        self.sweeper.stop()
        if self.health is not None:
            self.health.stop()
        self.alerts.stop()
        self.transport.close()
        self.store.dispose()


def _from_environment() -> Runtime:
    from .broker import broker, settings
    return Runtime.build(settings, broker)


_runtime: PerProcess[Runtime] = PerProcess(_from_environment)

#: This process's runtime, built from the environment on first use.
get = _runtime.get
#: Replace this process's runtime (tests); ``None`` forgets it.
install = _runtime.install
