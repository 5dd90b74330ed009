"""The delivery-worker's Prometheus metrics, served on ``HEALTH_PORT`` by each worker process.

Labels are bounded: an attempt's category (``payhook_delivery.errors.Category``), a priority level,
and an outcome among ``delivered``, ``retry``, ``dead``, ``deferred``, ``waiting``, ``skipped``.
"""

from __future__ import annotations

import datetime as dt

from prometheus_client import Counter, Histogram

from payhook_shared.metrics import END_TO_END_BUCKETS, REQUEST_BUCKETS
from payhook_shared.priority import Priority

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
