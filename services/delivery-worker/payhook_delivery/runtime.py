"""What a delivery-worker process needs at hand: settings, store, broker, HTTP pool, limiter, sweeper, purge."""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import urllib3

from payhook_shared import replays, retention
from payhook_shared.broker import RedisBroker
from payhook_shared.jobs import Periodic, Sweeper
from payhook_shared.messages import MAX_DELIVERIES, DeliverWebhook
from payhook_shared.priority import DELIVERY, Priority
from payhook_shared.store import Delivery, Replay, Store
from payhook_shared.store.models import utcnow
from payhook_shared.workers import Background, WorkerRuntime

from . import http, metrics
from .limits import Limiter
from .settings import Settings


def _message_for(deliveries: list[Delivery]) -> DeliverWebhook:
    return DeliverWebhook(delivery_ids=tuple(d.id for d in deliveries), priority=Priority(deliveries[0].priority))


@dataclasses.dataclass
class Runtime(WorkerRuntime):
    """One process's shared resources."""

    settings: Settings
    store: Store
    broker: RedisBroker
    http: urllib3.PoolManager
    sweeper: Sweeper
    limiter: Limiter
    retention: Periodic | None
    # Replays whose message was lost, or whose worker died mid-batch, are sent again from the store.
    replay_sweeper: Sweeper
    # The POSTs of a message naming several deliveries, run side by side: THREADS at a time in the process.
    posts: ThreadPoolExecutor
    # The time attempts are recorded at and retries, leases and circuits are judged by; tests move it.
    clock: Callable[[], dt.datetime] = utcnow

    def background(self) -> list[Background]:
        """The sweepers and, when enabled, the retention purge."""
        loops: list[Background] = [self.sweeper, self.replay_sweeper]
        return loops + [self.retention] if self.retention else loops

    def purge_once(self) -> retention.Purged:
        """Apply the retention policy once, and count what it removed."""
        s = self.settings
        started = time.monotonic()
        done = retention.purge(self.store, retention.Policy(s.retention_raw_payload_days, s.retention_events_days),
                               export_dir=s.retention_export_dir or None)
        metrics.purged(done, time.monotonic() - started, time.time())
        return done

    @classmethod
    def build(cls, settings: Settings, broker: RedisBroker,
              clock: Callable[[], dt.datetime] = utcnow) -> "Runtime":
        """Resources for ``settings``, enqueuing on ``broker``, telling the time by ``clock``."""
        store = Store(settings.database_url, pool_size=settings.db_pool_size,
                      prepared=settings.db_prepared_statements)
        sweeper = Sweeper(store, broker, Delivery, DELIVERY, _message_for, interval=settings.sweep_interval,
                          fetched_grace=settings.lease_seconds, group=MAX_DELIVERIES,
                          idle_interval=settings.sweep_idle_interval, clock=clock)
        limiter = Limiter(broker.client, lease=settings.lease_seconds, busy_delay=settings.limit_retry_delay)
        rt = cls(settings, store, broker, http.pool(settings.threads), sweeper, limiter, None,
                 Sweeper(store, broker, Replay, "replay", lambda rows: replays.message_for(rows[0]),
                         interval=settings.sweep_interval, idle_interval=settings.sweep_idle_interval,
                         clock=clock),
                 ThreadPoolExecutor(settings.threads, thread_name_prefix="post"), clock)
        if settings.retention_interval > 0:
            rt.retention = Periodic(broker.client, "retention", settings.retention_interval, rt.purge_once)
        return rt

    def release(self) -> None:
        """Let the POSTs in flight finish, then close the HTTP pool."""
        self.posts.shutdown(wait=True)
        self.http.clear()
