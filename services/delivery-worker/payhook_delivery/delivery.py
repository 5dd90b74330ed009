"""One delivery attempt, from claim to recorded outcome."""

from __future__ import annotations

import datetime as dt
import logging

from sqlalchemy import select, update

from payhook_shared import signing
from payhook_shared.events import webhook_body
from payhook_shared.jobs import claim
from payhook_shared.logs import bind
from payhook_shared.messages import DeliverWebhook
from payhook_shared.store import Delivery, DeliveryAttempt, Endpoint, Event, JobState
from payhook_shared.store.models import utcnow

from . import http, limits, policy
from .errors import Category
from .runtime import Runtime

log = logging.getLogger(__name__)

SKIPPED = "skipped"
DEFERRED = "deferred"


def deliver(rt: Runtime, message: DeliverWebhook) -> str:
    """Attempt one delivery; returns the attempt's category, ``"skipped"`` or ``"deferred"``.

    Skips when the delivery is not ours to attempt — already delivered, dead,
    not yet due, or claimed by another worker — so a duplicate message never
    sends twice. Defers, without spending an attempt, when the endpoint is at
    its rate limit or concurrency cap.
    """
    settings = rt.settings
    with bind(delivery_id=message.delivery_id, event_id=message.event_id, merchant_id=message.merchant_id):
        started = utcnow()
        with rt.store.write() as session:
            if not claim(session, Delivery, message.delivery_id, dt.timedelta(seconds=settings.lease_seconds), started):
                log.debug("delivery not due or already handled; skipping")
                return SKIPPED
            delivery, endpoint, event = session.execute(
                select(Delivery, Endpoint, Event)
                .join(Endpoint, Delivery.endpoint_id == Endpoint.id)
                .join(Event, Delivery.event_id == Event.id)
                .where(Delivery.id == message.delivery_id)
            ).one()
            attempt_no = delivery.attempts
            body = webhook_body(event)
            headers = signing.headers(endpoint.signing_secrets(started), event.id, body)

        with rt.limiter.slot(endpoint.id, endpoint.rate_limit_per_second, endpoint.max_in_flight) as grant:
            if not grant.granted:
                limits.defer(rt.store, delivery.id, grant.wait)
                return DEFERRED
            result = http.post(
                rt.http, endpoint.url, body, headers, connect_timeout=settings.connect_timeout,
                total_timeout=settings.total_timeout, snippet_bytes=settings.response_snippet_bytes,
                allow=settings.endpoint_allowlist,
            )
        _record(rt, delivery.id, attempt_no, started, result)
        return result.category.value


def _record(rt: Runtime, delivery_id: str, attempt_no: int, started: dt.datetime, result: http.AttemptResult) -> None:
    settings = rt.settings
    now = utcnow()
    values: dict = {"lease_until": None, "last_status": result.status, "last_category": result.category.value}
    if result.category is Category.SUCCESS:
        values.update(state=JobState.DONE.value, delivered_at=now, last_error=None)
        log.info("delivered on attempt %d (%s, %d ms)", attempt_no, result.status, result.duration_ms)
    else:
        error = result.error or f"HTTP {result.status}"
        delay = policy.next_delay(attempt_no, result.category, settings.retry_schedule, settings.retry_jitter)
        if delay is None:
            values.update(state=JobState.DEAD.value, last_error=error)
            log.warning("delivery dead after attempt %d: %s", attempt_no, error)
        else:
            # The sweeper enqueues it when due: no thread or Redis message waits meanwhile.
            values.update(state=JobState.PENDING.value, next_attempt_at=now + dt.timedelta(seconds=delay),
                          last_error=error)
            log.info("attempt %d failed (%s); retry in %.1f s", attempt_no, result.category.value, delay)
    with rt.store.write() as session:
        session.add(DeliveryAttempt(
            delivery_id=delivery_id, number=attempt_no, started_at=started, duration_ms=result.duration_ms,
            status_code=result.status, category=result.category.value, error=result.error,
            response_snippet=result.snippet,
        ))
        session.execute(update(Delivery).where(Delivery.id == delivery_id).values(**values)
                        .execution_options(synchronize_session=False))
