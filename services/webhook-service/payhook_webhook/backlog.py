"""Queue and store figures: what waits in Redis, what the store holds, which endpoints are unhealthy.

One snapshot serves both ``GET /health/queue`` and the gauges on ``/metrics``. It is computed on
demand and kept for ``QUEUE_STATS_TTL`` seconds (5 by default), so scrapes and probes from several
Prometheus servers cost Redis one pipelined ``LLEN`` per queue and the store a few grouped counts,
at most once per interval and process.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import and_, func, select

from payhook_shared.broker import RedisBroker
from payhook_shared.priority import DELIVERY, MAIL, Priority, queue_name
from payhook_shared.store import Delivery, Email, Endpoint, JobState, Store
from payhook_shared.store.models import utcnow

log = logging.getLogger(__name__)

FAMILIES = {DELIVERY: Delivery, MAIL: Email}
#: Per queue: waiting (Redis list length), active (claimed), delayed (pending, due later),
#: dead, completed (done).
FIGURES = ("waiting", "active", "delayed", "dead", "completed")


def snapshot(store: Store, broker: RedisBroker, now: dt.datetime | None = None) -> dict[str, Any]:
    """The current figures of every queue of both families, and of the endpoints.

    ``oldest_due_seconds`` is how long the oldest job that is due (pending, not delayed) has waited:
    a backlog's age, whether its message waits in Redis or was lost and awaits the sweeper.
    """
    now = now or utcnow()
    queues = {queue_name(family, p): {"family": family, "priority": p.label, **dict.fromkeys(FIGURES, 0),
                                       "oldest_due_seconds": 0.0}
              for family in FAMILIES for p in Priority}
    for name, size in broker.queue_sizes(queues).items():
        queues[name]["waiting"] = int(size)
    by_state = {JobState.SENDING.value: "active", JobState.DEAD.value: "dead", JobState.DONE.value: "completed"}
    with store.read() as session:
        for family, model in FAMILIES.items():
            for priority, state, count in session.execute(
                    select(model.priority, model.state, func.count()).group_by(model.priority, model.state)):
                if state in by_state and priority in Priority._value2member_map_:
                    queues[queue_name(family, Priority(priority))][by_state[state]] = count
            pending = model.state == JobState.PENDING.value
            for priority, count in session.execute(
                    select(model.priority, func.count()).where(and_(pending, model.next_attempt_at > now))
                    .group_by(model.priority)):
                if priority in Priority._value2member_map_:
                    queues[queue_name(family, Priority(priority))]["delayed"] = count
            for priority, oldest in session.execute(
                    select(model.priority, func.min(model.next_attempt_at)).where(and_(pending,
                                                                                  model.next_attempt_at <= now))
                    .group_by(model.priority)):
                if priority in Priority._value2member_map_ and oldest is not None:
                    queues[queue_name(family, Priority(priority))]["oldest_due_seconds"] = max(
                        0.0, (now - _aware(oldest)).total_seconds())
        circuit_open = session.scalar(select(func.count()).select_from(Endpoint).where(
            Endpoint.enabled.is_(True), Endpoint.circuit_open_until > now))
        disabled = session.scalar(select(func.count()).select_from(Endpoint).where(Endpoint.enabled.is_(False)))
    return {"queues": queues, "endpoints": {"circuit_open": circuit_open, "disabled": disabled}}


def _aware(value: dt.datetime) -> dt.datetime:
    # func.min() bypasses the column type on SQLite, which hands back a naive UTC value.
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)


class QueueCollector(Collector):
    """Prometheus gauges from a cached ``snapshot``; ``payhook_queue_stats_up`` is 0 when it failed."""

    def __init__(self, store: Store, broker: RedisBroker, ttl: float = 5.0):
        self.store = store
        self.broker = broker
        self.ttl = ttl
        self._lock = threading.Lock()
        self._cached: tuple[float, dict[str, Any]] | None = None

    def stats(self) -> dict[str, Any]:
        """The snapshot, recomputed when older than ``ttl`` seconds.

        Raises:
          Exception: whatever the store or Redis raised when a fresh snapshot was needed.
        """
        with self._lock:
            if self._cached is not None and time.monotonic() - self._cached[0] < self.ttl:
                return self._cached[1]
            stats = snapshot(self.store, self.broker)
            self._cached = (time.monotonic(), stats)
            return stats

    def collect(self):
        """Gauges for every queue and for the endpoints; only ``payhook_queue_stats_up 0`` on failure."""
        up = GaugeMetricFamily("payhook_queue_stats_up", "1 if the queue and store figures could be read.")
        try:
            stats = self.stats()
        except Exception as exc:
            log.warning("queue figures unavailable: %s", type(exc).__name__)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        labels = ["queue", "family", "priority"]
        families = {
            "waiting": GaugeMetricFamily("payhook_queue_waiting_messages",
                                         "Messages waiting in the Redis queue (LLEN).", labels=labels),
            "active": GaugeMetricFamily("payhook_queue_active_jobs",
                                        "Jobs claimed by a worker (state sending).", labels=labels),
            "delayed": GaugeMetricFamily("payhook_queue_delayed_jobs",
                                         "Jobs pending a retry that is due in the future.", labels=labels),
            "dead": GaugeMetricFamily("payhook_dead_letters", "Dead jobs (dead letters).", labels=labels),
            "completed": GaugeMetricFamily("payhook_queue_completed_jobs",
                                           "Jobs done (delivered or sent).", labels=labels),
            "oldest_due_seconds": GaugeMetricFamily(
                "payhook_queue_oldest_due_seconds", "Age of the oldest job that is due and not yet claimed.",
                labels=labels),
        }
        for name, figures in stats["queues"].items():
            values = [name, figures["family"], figures["priority"]]
            for key, family in families.items():
                family.add_metric(values, figures[key])
        yield from families.values()
        endpoints = stats["endpoints"]
        yield GaugeMetricFamily("payhook_endpoints_circuit_open", "Enabled endpoints whose circuit is open.",
                                value=endpoints["circuit_open"])
        yield GaugeMetricFamily("payhook_endpoints_disabled", "Disabled endpoints.", value=endpoints["disabled"])
