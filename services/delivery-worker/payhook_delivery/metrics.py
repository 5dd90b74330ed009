"""The delivery-worker's Prometheus metrics, served on ``HEALTH_PORT`` by each worker process.

Labels are bounded: an attempt's category (``payhook_delivery.errors.Category``), a priority level,
an outcome among ``delivered``, ``retry``, ``dead``, ``deferred``, ``waiting``, ``skipped``, and what
the retention purge removed (``RETENTION_KINDS``).
"""

from __future__ import annotations

import datetime as dt

from prometheus_client import Counter, Gauge, Histogram

from payhook_shared.metrics import END_TO_END_BUCKETS, REQUEST_BUCKETS
from payhook_shared.priority import Priority
from payhook_shared.retention import Purged

ATTEMPTS = Counter("payhook_delivery_attempts_total", "Delivery attempts made (HTTP POSTs or refusals), "
                   "by result category.", ["category", "priority"])
DELIVERIES = Counter("payhook_deliveries_total", "Delivery messages handled, by outcome: delivered, retry "
                     "(failed, scheduled again), dead, deferred (endpoint limit), waiting (circuit open), "
                     "skipped (not ours or not due).", ["outcome", "priority"])
ATTEMPT_LATENCY = Histogram("payhook_delivery_attempt_duration_seconds", "Duration of one delivery attempt.",
                            ["priority"], buckets=REQUEST_BUCKETS)
DELIVERY_LATENCY = Histogram("payhook_delivery_latency_seconds", "From the event's receipt by the "
                             "webhook-service to its delivery to this endpoint.", ["priority"],
                             buckets=END_TO_END_BUCKETS)

#: What a retention purge removes: rows of each table, and raw payloads blanked (the event stays).
RETENTION_KINDS = ("events", "deliveries", "attempts", "emails", "payment_intents", "status_checks", "raw_payloads")
RETENTION_PURGED = Counter("payhook_retention_purged_total", "Rows deleted by the retention purge, by kind "
                           "(raw_payloads: payloads blanked on events kept).", ["kind"])
RETENTION_SECONDS = Histogram("payhook_retention_purge_duration_seconds", "Duration of one retention purge run.",
                              buckets=(0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600))
RETENTION_LAST_RUN = Gauge("payhook_retention_last_run_timestamp_seconds", "When this process last finished "
                           "a retention purge (Unix time); 0 before its first.")
for _kind in RETENTION_KINDS:
    RETENTION_PURGED.labels(_kind)  # every kind exposed from the start, so rate() sees the first purge

# Outcomes of a message that reached the endpoint or ended the delivery; delivery.py names the others.
DELIVERED, RETRY, DEAD = "delivered", "retry", "dead"


def outcome(name: str, priority: Priority | int | str) -> None:
    """Count one handled delivery message."""
    DELIVERIES.labels(name, Priority.parse(priority).label).inc()


def attempt(category: str, priority: Priority | int | str, seconds: float) -> None:
    """Count one attempt and observe its duration."""
    label = Priority.parse(priority).label
    ATTEMPTS.labels(category, label).inc()
    ATTEMPT_LATENCY.labels(label).observe(seconds)


def delivered(priority: Priority | int | str, received_at: dt.datetime, now: dt.datetime) -> None:
    """Observe the ingest-to-delivery latency of one delivered webhook."""
    DELIVERY_LATENCY.labels(Priority.parse(priority).label).observe(max(0.0, (now - received_at).total_seconds()))


def purged(done: Purged, seconds: float, finished_at: float) -> None:
    """Count what one retention purge removed, and when it finished."""
    for kind in RETENTION_KINDS:
        RETENTION_PURGED.labels(kind).inc(getattr(done, kind))
    RETENTION_SECONDS.observe(seconds)
    RETENTION_LAST_RUN.set(finished_at)
