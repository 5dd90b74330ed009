"""What a mail-worker process needs at hand: settings, store, broker, transport, templates, sweeper, alerts."""

from __future__ import annotations

import dataclasses

import jinja2

from payhook_shared import notices
from payhook_shared.broker import RedisBroker
from payhook_shared.jobs import Sweeper
from payhook_shared.priority import MAIL
from payhook_shared.store import Email, Store
from payhook_shared.workers import Background, WorkerRuntime

from . import render, transport
from .alerts import AlertLoop
from .settings import Settings


@dataclasses.dataclass
class Runtime(WorkerRuntime):
    """One process's shared resources."""

    settings: Settings
    store: Store
    broker: RedisBroker
    transport: transport.Transport
    templates: jinja2.Environment
    sweeper: Sweeper
    alerts: AlertLoop

    @classmethod
    def build(cls, settings: Settings, broker: RedisBroker) -> "Runtime":
        """Resources for ``settings``, enqueuing on ``broker``."""
        store = Store(settings.database_url, pool_size=settings.db_pool_size,
                      prepared=settings.db_prepared_statements)
        sweeper = Sweeper(store, broker, Email, MAIL, lambda rows: notices.message_for(rows[0]),
                          interval=settings.sweep_interval, idle_interval=settings.sweep_idle_interval,
                          fetched_grace=settings.lease_seconds)
        return cls(settings, store, broker, transport.from_settings(settings), render.environment(), sweeper,
                   AlertLoop(settings, store, broker))

    def background(self) -> list[Background]:
        """The sweeper and the operator alert check."""
        return [self.sweeper, self.alerts]

    def health_attempts(self) -> int:
        """Sibling processes (``PROCESSES``) each take the next free port from ``HEALTH_PORT`` on."""
        return self.settings.processes

    def release(self) -> None:
        """Close the mail transport."""
        self.transport.close()
