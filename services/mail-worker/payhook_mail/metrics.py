"""The mail-worker's Prometheus metrics, served on ``HEALTH_PORT`` by each worker process.

Labels are bounded: a template is one of the six notices (``payhook_shared.notices``), an outcome
one of ``sent``, ``retry``, ``dead``, ``skipped`` (a skipped email is not read, so its template is
``unknown``) or ``suppressed`` (over its merchant's cap on customer emails, also counted on its own).
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from payhook_shared.metrics import REQUEST_BUCKETS

EMAILS = Counter("payhook_emails_total", "Email messages handled, by template and outcome.", ["template", "outcome"])
SEND_LATENCY = Histogram("payhook_email_send_duration_seconds", "Time to render and hand one email to the "
                         "transport, by outcome.", ["outcome"], buckets=REQUEST_BUCKETS)
SUPPRESSED = Counter("payhook_emails_suppressed_total", "Customer emails not sent because their merchant reached "
                     "CUSTOMER_EMAILS_PER_HOUR, by template.", ["template"])

UNKNOWN_TEMPLATE = "unknown"


def email(template: str, outcome: str, seconds: float | None = None) -> None:
    """Count one handled email, and observe how long sending took when it was tried."""
    EMAILS.labels(template, outcome).inc()
    if outcome == "suppressed":
        SUPPRESSED.labels(template).inc()
    if seconds is not None:
        SEND_LATENCY.labels(outcome).observe(seconds)
