"""The webhook-service's Prometheus metrics and ``GET /metrics``.

Labels stay bounded: routes are Flask's rule templates (``/cb/<merchant_id>/<token>/stk``), never raw
paths; validation reasons are a top-level field name of the callback schemas or one of ``json``,
``content_type``, ``size``; event types outside the providers' own are counted as ``other``.

Under gunicorn every process writes its samples to ``PROMETHEUS_MULTIPROC_DIR`` (see
``gunicorn_conf``) and ``/metrics`` adds them up, so any process answers for all of them. The queue
and store gauges (``backlog.QueueCollector``) are computed at scrape time, cached for a few seconds.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

import redis
from flask import Blueprint, Flask, Response, current_app, g, request
from prometheus_client import Counter, Histogram
from prometheus_client.core import GaugeMetricFamily

from payhook_shared import metrics
from payhook_shared.callbacks import mpesa
from payhook_shared.callbacks.gateways import PROVIDERS

from .backlog import QueueCollector

HTTP_REQUESTS = Counter("payhook_http_requests_total", "HTTP requests answered, by route template.",
                        ["route", "method", "status"])
HTTP_LATENCY = Histogram("payhook_http_request_duration_seconds", "Time to answer an HTTP request.",
                         ["route", "method"], buckets=metrics.REQUEST_BUCKETS)
CALLBACKS = Counter("payhook_callbacks_total", "Provider callbacks by kind and outcome "
                    "(accepted, duplicate, spooled, invalid, refused, error).", ["kind", "outcome"])
VALIDATION_FAILURES = Counter("payhook_validation_failures_total", "Callbacks refused as invalid, by reason: "
                              "the top-level field at fault, or json, content_type, size.", ["kind", "reason"])
SOURCE_REFUSED = Counter("payhook_source_callbacks_refused_total",
                         "Gateway callbacks refused before recording, by provider and reason.", ["provider", "reason"])
QUARANTINED = Counter("payhook_callbacks_quarantined_total", "Callbacks on a valid callback URL refused as invalid "
                      "(not JSON, not declared JSON, or failing their schema) and kept in quarantine.",
                      ["provider", "kind"])
QUARANTINE_FAILURES = Counter("payhook_callbacks_quarantine_failures_total", "Invalid callbacks that could not be "
                              "quarantined because the store failed: lost.", ["provider"])
# Every series exists from the start at 0, so increase() counts the first quarantined callback too.
for _kind in mpesa.NORMALISERS:
    QUARANTINED.labels("mpesa", _kind)
for _provider in PROVIDERS:
    QUARANTINED.labels(_provider, "webhook")
for _provider in ("mpesa", *PROVIDERS):
    QUARANTINE_FAILURES.labels(_provider)
SPOOLED = Counter("payhook_callbacks_spooled_total", "M-Pesa callbacks the store could not record, kept in the "
                  "Redis spool and answered as accepted.", ["kind"])
SPOOL_DRAINED = Counter("payhook_spool_drained_total", "Spooled callbacks moved into the store, by outcome "
                        "(recorded, duplicate, quarantined, unknown_merchant).", ["outcome"])
for _kind in mpesa.NORMALISERS:
    SPOOLED.labels(_kind)
for _outcome in ("recorded", "duplicate", "quarantined", "unknown_merchant"):
    SPOOL_DRAINED.labels(_outcome)
INGEST_BATCH = Histogram("payhook_ingest_batch_events", "Events written together in one database write "
                         "(group commit): near 1 when idle, larger under load.", buckets=(1, 2, 4, 8, 16, 32, 64, 100))
RECONCILED = Counter("payhook_reconcile_checks_total", "STK Push Queries of intents whose callback never came, by "
                     "outcome (resolved, duplicate, processing, unavailable, rejected, no_credentials, "
                     "store_error; settled: its event was recorded already, no query).", ["outcome"])
for _outcome in ("resolved", "duplicate", "settled", "processing", "unavailable", "rejected", "no_credentials",
                 "store_error"):
    RECONCILED.labels(_outcome)
UNRESOLVED = Counter("payhook_payments_unresolved_total", "Payment intents that ended unknown: no callback, and "
                     "Daraja's STK Push Query gave no final answer in time (payhook.payment.unresolved sent).")
STATUS_CHECKS = Counter("payhook_status_checks_total", "Transaction Status follow-ups of B2C, B2B and reversal "
                        "QueueTimeOuts, by outcome (asked; resolved, duplicate: the answer settled it; unsettled, "
                        "no_answer: asked again; unavailable, rejected, no_credentials: Daraja not asked this time; "
                        "skipped: no initiator credentials; store_error).", ["outcome"])
for _outcome in ("asked", "resolved", "duplicate", "unsettled", "no_answer", "unavailable", "rejected",
                 "no_credentials", "skipped", "store_error"):
    STATUS_CHECKS.labels(_outcome)
TRANSACTIONS_UNRESOLVED = Counter("payhook_transactions_unresolved_total", "B2C, B2B and reversal QueueTimeOuts "
                                  "Transaction Status never settled (payhook.transaction.unresolved sent), by the "
                                  "event's type.", ["type"])
for _type in mpesa.FOLLOWED:
    TRANSACTIONS_UNRESOLVED.labels(_type)
EVENTS = Counter("payhook_events_total", "New events recorded (duplicates excluded), by type and priority.",
                 ["type", "priority"])

_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
_KNOWN_TYPES = frozenset(
    value for name, value in vars(mpesa).items() if name.isupper() and isinstance(value, str)
    and value.startswith("mpesa."))
_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,39}")

bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
def scrape():
    """Every process's metrics and the queue and store gauges, in the Prometheus text format."""
    registry = metrics.scrape_registry()
    body, content_type = metrics.exposition(registry)
    extra, _ = metrics.exposition(current_app.extensions["payhook.queue_registry"])
    return Response(body + extra, content_type=content_type)


class SpoolWaiting:
    """``payhook_spool_waiting``: spooled callbacks waiting for the store, read from Redis at each scrape."""

    def __init__(self, waiting: Callable[[], int]):
        self.waiting = waiting

    def collect(self):
        """One gauge; none while Redis does not answer (the queue figures' alert covers that)."""
        try:
            count = self.waiting()
        except redis.RedisError:
            return
        yield GaugeMetricFamily("payhook_spool_waiting", "Callbacks in the Redis spool waiting for the store "
                                "(the same figure on every replica: aggregate with max).", value=count)


def event_type_label(event_type: str) -> str:
    """``event_type`` if it is a provider's own type; ``other`` for free-form API types."""
    return event_type if event_type in _KNOWN_TYPES else "other"


def count_event(event_type: str, priority_label: str) -> None:
    """Count one newly recorded event."""
    EVENTS.labels(event_type_label(event_type), priority_label).inc()


def observe_batch(events: int) -> None:
    """Note one ingest write of ``events`` events."""
    INGEST_BATCH.observe(events)


def validation_reason(messages: object) -> str:
    """A bounded reason for a schema failure: the first top-level field named by marshmallow."""
    if isinstance(messages, dict) and messages:
        field = str(next(iter(messages)))
        if _FIELD.fullmatch(field):
            return field
    return "schema"


def note_invalid(reason: str) -> None:
    """Record why the current callback is invalid, for the after-request count."""
    g.metrics_invalid_reason = reason


def note_duplicate() -> None:
    """Mark the current callback as a duplicate, for the after-request count."""
    g.metrics_duplicate = True


def note_spooled() -> None:
    """Mark the current callback as spooled (the store refused it), for the after-request count."""
    g.metrics_spooled = True


def _callback_outcome(status: int) -> str:
    if status >= 500:
        return "error"
    if status in (400, 413, 415):
        return "invalid"
    if status >= 400:
        return "refused"
    if g.get("metrics_spooled"):
        return "spooled"
    return "duplicate" if g.get("metrics_duplicate") else "accepted"


def _invalid_reason(status: int) -> str:
    if status == 413:
        return "size"
    if status == 415:
        return "content_type"
    return g.get("metrics_invalid_reason", "json")


def register(app: Flask, queue_stats_ttl: float) -> None:
    """Count every request of ``app`` and serve ``GET /metrics``."""
    from prometheus_client import CollectorRegistry

    queue_registry = CollectorRegistry(auto_describe=False)
    collector = QueueCollector(app.extensions["payhook.store"], app.extensions["payhook.broker"], queue_stats_ttl)
    queue_registry.register(collector)
    app.extensions["payhook.queue_registry"] = queue_registry
    app.extensions["payhook.queue_stats"] = collector.stats

    @app.before_request
    def _start_timer() -> None:
        g.metrics_started = time.perf_counter()

    @app.after_request
    def _count(response):
        rule = request.url_rule
        route = rule.rule if rule is not None else "unmatched"
        method = request.method if request.method in _METHODS else "other"
        status = response.status_code
        HTTP_REQUESTS.labels(route, method, str(status)).inc()
        started = g.get("metrics_started")
        if started is not None:
            HTTP_LATENCY.labels(route, method).observe(time.perf_counter() - started)
        endpoint = request.endpoint or ""
        if endpoint.startswith("callbacks."):
            kind = endpoint.split(".", 1)[1]
            outcome = _callback_outcome(status)
            CALLBACKS.labels(kind, outcome).inc()
            if outcome == "invalid":
                VALIDATION_FAILURES.labels(kind, _invalid_reason(status)).inc()
        return response

    app.register_blueprint(bp)
