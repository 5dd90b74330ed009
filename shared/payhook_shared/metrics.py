"""Prometheus plumbing shared by every service: exposition, the workers' health server, Dramatiq's metrics.

Each service declares its own metrics next to the code they count (``payhook_webhook.metrics``,
``payhook_delivery.metrics``, ``payhook_mail.metrics``); this module only serves them.

Workers serve ``GET /health``, ``/health/ready`` and ``/metrics`` on ``HEALTH_PORT`` from a small
threaded HTTP server started when the worker boots. The webhook-service runs several gunicorn
processes, so it uses prometheus-client's multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``, set by
its gunicorn config) and aggregates every process's samples at scrape time.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import prometheus_client
from dramatiq.middleware.prometheus import Prometheus
from prometheus_client import CollectorRegistry, multiprocess

log = logging.getLogger(__name__)

# A "_created" sample beside every counter doubles the series and no dashboard reads them.
prometheus_client.disable_created_metrics()

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

#: Seconds buckets from a fast local POST to a slow merchant (15 s attempt timeout).
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 30)
#: Ingest-to-delivery: seconds for a healthy system, hours when retries are involved.
END_TO_END_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 3600, 4 * 3600, 12 * 3600, 24 * 3600)


def scrape_registry() -> CollectorRegistry:
    """The registry to scrape in this process: every process's samples in multiprocess mode."""
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return registry
    return prometheus_client.REGISTRY


def exposition(registry: CollectorRegistry) -> tuple[bytes, str]:
    """``registry``'s samples in the Prometheus text format, and their content type."""
    return prometheus_client.generate_latest(registry), prometheus_client.CONTENT_TYPE_LATEST


def readiness(checks: dict[str, Callable[[], object]]) -> tuple[bool, dict[str, str]]:
    """Run each named check; ``"ok"`` or the exception's class name (never its text: it may hold a URL)."""
    results = {}
    for name, check in checks.items():
        try:
            check()
            results[name] = "ok"
        except Exception as exc:
            results[name] = type(exc).__name__
    return all(v == "ok" for v in results.values()), results


class HealthServer:
    """``/health``, ``/health/ready`` and ``/metrics`` for one worker process, in daemon threads.

    ``ready_checks`` name callables that raise when a dependency is unreachable.
    """

    def __init__(self, port: int, ready_checks: dict[str, Callable[[], object]],
                 registry: CollectorRegistry | None = None, host: str = "127.0.0.1"):
        self.requested_port = port
        self.host = host
        self.ready_checks = ready_checks
        self.registry = registry or prometheus_client.REGISTRY
        self._server: ThreadingHTTPServer | None = None

    @property
    def port(self) -> int | None:
        """The port actually bound, once started."""
        return self._server.server_address[1] if self._server else None

    def start(self, attempts: int = 1) -> "HealthServer":
        """Bind ``port`` (or, when busy, one of the next ``attempts - 1`` ports) and serve in the background.

        Several worker processes of one service (the mail-worker's ``PROCESSES``) take consecutive ports.
        A port that cannot be bound is logged, not fatal: the worker's work matters more than its metrics.
        """
        handler = _handler(self)
        for offset in range(max(attempts, 1)):
            try:
                self._server = ThreadingHTTPServer((self.host, self.requested_port + offset), handler)
                break
            except OSError as exc:
                last_error = exc
        else:
            log.error("health/metrics server not started: port %d: %s", self.requested_port, last_error)
            return self
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="health-server", daemon=True).start()
        log.info("health and metrics on http://%s:%d/metrics", self.host, self.port)
        return self

    def stop(self) -> None:
        """Stop serving and release the port."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def _handler(server: HealthServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                body, content_type = exposition(server.registry)
                self._answer(200, body, content_type)
            elif path == "/health":
                self._json(200, {"status": "ok"})
            elif path == "/health/ready":
                healthy, checks = readiness(server.ready_checks)
                self._json(200 if healthy else 503,
                           {"status": "ok" if healthy else "unavailable", "checks": checks})
            else:
                self._json(404, {"error": {"code": "not_found", "message": f"no such path: {path}"}})

        def _json(self, status: int, payload: dict) -> None:
            self._answer(status, json.dumps(payload).encode(), "application/json")

        def _answer(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("content-type", content_type)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            """Quiet: a scrape every few seconds is not news."""

    return Handler


@functools.cache
def _dramatiq_metrics() -> dict[str, object]:
    """Dramatiq's metrics, created once per process however many brokers (tests run two) use them."""
    labels = ["queue_name", "actor_name"]
    counter, gauge = prometheus_client.Counter, prometheus_client.Gauge
    return {
        "total_messages": counter("dramatiq_messages_total", "Messages processed.", labels),
        "total_errored_messages": counter("dramatiq_message_errors_total", "Messages whose actor raised.", labels),
        "total_retried_messages": counter("dramatiq_message_retries_total", "Messages retried by Dramatiq.", labels),
        "total_rejected_messages": counter("dramatiq_message_rejects_total", "Messages dead-lettered by Dramatiq.",
                                           labels),
        "inprogress_messages": gauge("dramatiq_messages_inprogress", "Messages being processed.", labels,
                                     multiprocess_mode="livesum"),
        "inprogress_delayed_messages": gauge("dramatiq_delayed_messages_inprogress",
                                             "Delayed messages held in memory.", labels, multiprocess_mode="livesum"),
        "message_durations": prometheus_client.Histogram("dramatiq_message_duration_seconds",
                                                         "Time spent processing messages.", labels,
                                                         buckets=REQUEST_BUCKETS),
    }


class DramatiqMetrics(Prometheus):
    """Dramatiq's Prometheus middleware, registered in this process's registry instead of its own server.

    Dramatiq's version switches the whole process to multiprocess mode and serves from a process
    forked by its CLI on a port of its own, which the embedded delivery worker never forks and which
    would be a second port per worker. This keeps its hooks and metric names, creates the metrics
    once per process in the default registry (so in-process workers in tests count too), and
    measures durations in seconds, Prometheus's base unit.
    """

    def __init__(self) -> None:
        super().__init__()
        for name, metric in _dramatiq_metrics().items():
            setattr(self, name, metric)

    @property
    def forks(self):
        """No exposition process: the worker's health server serves these metrics."""
        return []

    def after_process_boot(self, broker) -> None:
        """Nothing to set up: the metrics exist from construction."""

    def after_worker_shutdown(self, broker, worker) -> None:
        """Nothing to mark: these metrics live in this process's memory only."""

    def before_process_message(self, broker, message) -> None:
        """Count the message in progress and note when it started."""
        super().before_process_message(broker, message)
        self.message_start_times[message.message_id] = time.monotonic()

    def after_process_message(self, broker, message, *, result=None, exception=None) -> None:
        """Count the message and observe its duration in seconds."""
        labels = (message.queue_name, message.actor_name)
        started = self.message_start_times.pop(message.message_id, time.monotonic())
        self.message_durations.labels(*labels).observe(time.monotonic() - started)
        self.inprogress_messages.labels(*labels).dec()
        self.total_messages.labels(*labels).inc()
        if exception is not None:
            self.total_errored_messages.labels(*labels).inc()

    after_skip_message = after_process_message
