"""One delivery attempt, from claim to recorded outcome, and the endpoint's health.

Endpoint health is a circuit breaker kept in the store, so every worker
process sees the same state: ``circuit_threshold`` failures in a row open it;
while open, deliveries wait (postponed, no attempt spent); when the cool-down
passes one delivery takes the half-open probe, and its success closes the
circuit. The merchant hears once per incident (the circuit opening), and again
if the endpoint fails continuously for ``disable_after`` and is disabled.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import types
from typing import Any

import dramatiq
from sqlalchemy import bindparam, func, insert, select, update

from payhook_shared import jobs, notices, signing
from payhook_shared.events import webhook_body
from payhook_shared.logs import bind
from payhook_shared.messages import DeliverWebhook
from payhook_shared.store import Delivery, DeliveryAttempt, Email, Endpoint, Event, JobState, Merchant, Store
from payhook_shared.store.compiled import Compiled

from . import http, limits, metrics, policy
from .errors import Category
from .runtime import Runtime

log = logging.getLogger(__name__)

SKIPPED = "skipped"
WAITING = "waiting"
DEFERRED = "deferred"


def deliver(rt: Runtime, message: DeliverWebhook) -> str:
    """Attempt one delivery; returns the attempt's category, ``"skipped"``, ``"waiting"`` or ``"deferred"``.

    Skips when the delivery is not ours to attempt — already delivered, dead,
    not yet due, or claimed by another worker — so a duplicate message never
    sends twice. Without spending an attempt, it waits while the endpoint's
    circuit is open, and defers when the endpoint is at its rate limit or
    concurrency cap.
    """
    settings = rt.settings
    with bind(delivery_id=message.delivery_id, event_id=message.event_id, merchant_id=message.merchant_id):
        started = rt.clock()
        loaded = _claim(rt.store, message.delivery_id, dt.timedelta(seconds=settings.lease_seconds), started)
        if loaded is None:
            log.debug("delivery not due or already handled; skipping")
            metrics.outcome(SKIPPED, message.priority)
            return SKIPPED
        delivery, endpoint, event, merchant = loaded
        if not endpoint.enabled:
            with rt.store.write() as session:
                _set(session, delivery.id, state=JobState.DEAD.value, lease_until=None, dead_at=started,
                     last_category=Category.DISABLED.value, last_error="endpoint disabled",
                     attempts=delivery.attempts - 1)
            log.info("endpoint disabled; delivery kept as a dead letter for recovery")
            metrics.outcome(metrics.DEAD, message.priority)
            return Category.DISABLED.value
        wait_until = _circuit_wait(rt.store, endpoint, started, settings.circuit_cooldown)
        if wait_until is not None:
            with rt.store.write() as session:
                jobs.release(session, Delivery, delivery.id, wait_until)
            log.debug("circuit open for endpoint %s; waiting until %s", endpoint.id, wait_until.isoformat())
            metrics.outcome(WAITING, message.priority)
            return WAITING
        attempt_no = delivery.attempts
        in_round = attempt_no - delivery.round_start
        schedule = policy.schedule_for(merchant.settings, settings.retry_schedule)
        body = webhook_body(event)
        if len(body) > settings.max_payload_bytes:
            with rt.store.write() as session:
                _set(session, delivery.id, state=JobState.DEAD.value, lease_until=None, dead_at=started,
                     last_category=Category.TOO_LARGE.value, attempts=delivery.attempts - 1,
                     last_error=f"payload of {len(body)} bytes exceeds {settings.max_payload_bytes}")
            log.warning("payload too large (%d bytes); delivery dead", len(body))
            metrics.outcome(metrics.DEAD, message.priority)
            return Category.TOO_LARGE.value
        headers = signing.headers(endpoint.signing_secrets(started), event.id, body)

        with rt.limiter.slot(endpoint.id, endpoint.rate_limit_per_second, endpoint.max_in_flight) as grant:
            if not grant.granted:
                limits.defer(rt.store, delivery.id, grant.wait, rt.clock())
                metrics.outcome(DEFERRED, message.priority)
                return DEFERRED
            result = http.post(
                rt.http, endpoint.url, body, headers, connect_timeout=settings.connect_timeout,
                total_timeout=settings.total_timeout, snippet_bytes=settings.response_snippet_bytes,
                allow=settings.endpoint_allowlist,
            )
        _record(rt, delivery, endpoint, merchant, attempt_no, in_round, schedule, started, result, event.received_at)
        return result.category.value


def _claim(store: Store, delivery_id: str, lease: dt.timedelta,
           now: dt.datetime) -> tuple[Any, Any, Any, Any] | None:
    """Claim the delivery and load it with its endpoint, event and merchant; ``None`` if it is not ours.

    On PostgreSQL the claim and the load are one statement (the UPDATE in a
    CTE, joined) run on the driver connection, so one round trip and no ORM;
    the rows come back as detached, read-only copies. The claim holds the row
    by its lease, not by a transaction.
    """
    params = {"delivery_id": delivery_id, "lease_until": now + lease, "now": now}
    if store.dialect == "postgresql":
        statement = _claim_and_load(store.engine.dialect)
        with store.driver() as conn:
            row = conn.execute(statement.sql, statement.params(params)).fetchone()
        return statement.objects(row) if row is not None else None
    with store.write() as session:
        if session.execute(_claiming(), params).rowcount != 1:
            return None
        return tuple(session.execute(_loading().where(Delivery.id == delivery_id)).one())


class _EndpointRow(types.SimpleNamespace):
    """An endpoint's columns as the claim read them, detached from any session."""

    signing_secrets = Endpoint.signing_secrets


# Built once: an ORM statement over a CTE costs more to construct than to run.
@functools.cache
def _claiming() -> Any:
    return jobs.claiming(Delivery, bindparam("delivery_id"), bindparam("lease_until"), bindparam("now"))


@functools.cache
def _claim_and_load(dialect: Any) -> Compiled:
    claimed = _claiming().returning(*Delivery.__table__.columns).cte("claimed")
    tables = (claimed, Endpoint.__table__, Event.__table__, Merchant.__table__)
    statement = (select(*(c for t in tables for c in t.columns))
                 .join_from(claimed, Endpoint.__table__, claimed.c.endpoint_id == Endpoint.id)
                 .join(Event.__table__, claimed.c.event_id == Event.id)
                 .join(Merchant.__table__, claimed.c.merchant_id == Merchant.id))
    kinds = (types.SimpleNamespace, _EndpointRow, types.SimpleNamespace, types.SimpleNamespace)
    return Compiled(statement, dialect, tuple((kind, [c.key for c in t.columns]) for kind, t in zip(kinds, tables)))


def _loading() -> Any:
    return (select(Delivery, Endpoint, Event, Merchant)
            .join(Endpoint, Delivery.endpoint_id == Endpoint.id)
            .join(Event, Delivery.event_id == Event.id)
            .join(Merchant, Delivery.merchant_id == Merchant.id))


def _set(session, delivery_id: str, **values) -> None:
    session.execute(update(Delivery).where(Delivery.id == delivery_id).values(**values)
                    .execution_options(synchronize_session=False))


def _circuit_wait(store: Store, endpoint: Endpoint, now: dt.datetime, cooldown: float) -> dt.datetime | None:
    """``None`` if this delivery may go ahead; otherwise when to look again.

    When the cool-down has passed, exactly one delivery wins the half-open
    probe: a compare-and-set pushes the circuit's time forward for everyone else.
    """
    opened = endpoint.circuit_open_until
    if opened is None:
        return None
    if opened > now:
        return opened
    next_probe = now + dt.timedelta(seconds=cooldown)
    with store.write() as session:
        won = session.execute(
            update(Endpoint).where(Endpoint.id == endpoint.id, Endpoint.circuit_open_until == opened)
            .values(circuit_open_until=next_probe).execution_options(synchronize_session=False)
        ).rowcount
    return None if won else next_probe


def _record(rt: Runtime, delivery: Delivery, endpoint: Endpoint, merchant: Merchant, attempt_no: int,
            in_round: int, schedule: tuple[float, ...], started: dt.datetime, result: http.AttemptResult,
            received_at: dt.datetime) -> None:
    settings = rt.settings
    now = rt.clock()
    outcome = metrics.DELIVERED
    # updated_at too: the one-statement record on PostgreSQL is built once and takes every value as a parameter.
    values: dict = {"lease_until": None, "last_status": result.status, "last_category": result.category.value,
                    "updated_at": now}
    if result.category is Category.SUCCESS:
        values.update(state=JobState.DONE.value, delivered_at=now, last_error=None)
        log.info("delivered on attempt %d (%s, %d ms)", attempt_no, result.status, result.duration_ms)
    else:
        error = result.error or f"HTTP {result.status}"
        delay = policy.next_delay(
            in_round, result.category, schedule, settings.retry_jitter,
            retry_after=policy.parse_retry_after(result.retry_after, now),
            retry_after_bounds=(settings.retry_after_min, settings.retry_after_max),
        )
        if delay is None:
            values.update(state=JobState.DEAD.value, dead_at=now, last_error=error)
            outcome = metrics.DEAD
            log.warning("delivery dead after attempt %d (%s): %s", attempt_no, result.category.value, error)
        else:
            # The sweeper enqueues it when due: no thread or Redis message waits meanwhile.
            values.update(state=JobState.PENDING.value, next_attempt_at=now + dt.timedelta(seconds=delay),
                          last_error=error)
            outcome = metrics.RETRY
            log.info("attempt %d failed (%s); retry in %.1f s", attempt_no, result.category.value, delay)
    attempt = {"delivery_id": delivery.id, "number": attempt_no, "started_at": started,
               "duration_ms": result.duration_ms, "status_code": result.status, "category": result.category.value,
               "error": result.error, "response_snippet": result.snippet}
    messages: list[dramatiq.Message] = []
    if rt.store.dialect == "postgresql":
        # The attempt and the delivery's new state in one statement: one round trip, no transaction.
        statement = _recording(tuple(values), rt.store.engine.dialect)
        with rt.store.driver() as conn:
            conn.execute(statement.sql, statement.params({
                **{f"attempt_{k}": v for k, v in attempt.items()}, **values, "delivery_id": delivery.id}))
        if _health_changes(endpoint, result):
            with rt.store.write() as session:
                messages = _update_health(session, settings, endpoint, merchant, result, now)
    else:
        with rt.store.write() as session:
            session.execute(insert(DeliveryAttempt).values(**attempt))
            _set(session, delivery.id, **values)
            messages = _update_health(session, settings, endpoint, merchant, result, now)
    metrics.attempt(result.category.value, delivery.priority, result.duration_ms / 1000)
    metrics.outcome(outcome, delivery.priority)
    if outcome == metrics.DELIVERED:
        metrics.delivered(delivery.priority, received_at, now)
    for message in messages:
        try:
            rt.broker.enqueue(message)
        except Exception:
            log.warning("could not enqueue %s; the sweeper will", message.queue_name, exc_info=True)


@functools.cache
def _recording(columns: tuple[str, ...], dialect: Any) -> Compiled:
    """``UPDATE deliveries SET <columns>`` with the attempt's INSERT as a CTE, compiled once per set of columns."""
    attempts = DeliveryAttempt.__table__
    attempt = insert(attempts).values(
        {c.key: bindparam(f"attempt_{c.key}", type_=c.type) for c in attempts.columns if c.key != "id"})
    table = Delivery.__table__
    return Compiled(update(table).where(table.c.id == bindparam("delivery_id"))
                     .values({name: bindparam(name, type_=table.c[name].type) for name in columns})
                     .add_cte(attempt.returning(attempts.c.id).cte("attempt")), dialect)


def _health_changes(endpoint: Endpoint, result: http.AttemptResult) -> bool:
    """Whether this attempt changes the endpoint's health: a failure, or the first success after failures."""
    if result.category is Category.SUCCESS:
        return bool(endpoint.consecutive_failures or endpoint.circuit_open_until or endpoint.failing_since)
    return result.category is not Category.BLOCKED


def _update_health(session, settings, endpoint: Endpoint, merchant: Merchant, result: http.AttemptResult,
                   now: dt.datetime) -> list[dramatiq.Message]:
    """Fold one attempt into the endpoint's health; returns the emails to send after commit."""
    if result.category is Category.SUCCESS:
        if endpoint.consecutive_failures or endpoint.circuit_open_until or endpoint.failing_since:
            session.execute(update(Endpoint).where(Endpoint.id == endpoint.id).values(
                consecutive_failures=0, failing_since=None, circuit_open_until=None,
            ).execution_options(synchronize_session=False))
            log.info("endpoint %s healthy again; circuit closed", endpoint.id)
        return []
    if result.category is Category.BLOCKED:
        return []
    failures, failing_since, circuit_open_until, enabled = session.execute(
        update(Endpoint).where(Endpoint.id == endpoint.id).values(
            consecutive_failures=Endpoint.consecutive_failures + 1,
            failing_since=func.coalesce(Endpoint.failing_since, now),
        ).returning(Endpoint.consecutive_failures, Endpoint.failing_since, Endpoint.circuit_open_until,
                    Endpoint.enabled)
    ).one()
    if not enabled:
        return []
    messages: list[Email | None] = []
    if result.category is Category.GONE or failing_since <= now - dt.timedelta(seconds=settings.disable_after):
        reason = "the endpoint answered 410 Gone" if result.category is Category.GONE else (
            f"failing continuously since {failing_since:%Y-%m-%d %H:%M} UTC")
        session.execute(update(Endpoint).where(Endpoint.id == endpoint.id).values(
            enabled=False, disabled_at=now, disabled_reason=reason, circuit_open_until=None,
        ).execution_options(synchronize_session=False))
        log.warning("endpoint %s disabled: %s", endpoint.id, reason)
        messages.append(notices.endpoint_disabled(merchant, endpoint, disabled_at=now, reason=reason))
    elif failures >= settings.circuit_threshold and circuit_open_until is None:
        session.execute(update(Endpoint).where(Endpoint.id == endpoint.id).values(
            circuit_open_until=now + dt.timedelta(seconds=settings.circuit_cooldown),
        ).execution_options(synchronize_session=False))
        log.warning("endpoint %s failed %d times in a row; circuit open", endpoint.id, failures)
        messages.append(notices.endpoint_failing(merchant, endpoint, incident_started_at=failing_since,
                                                 failures=failures,
                                                 last_error=result.error or f"HTTP {result.status}"))
    # One email per incident: stage() skips an email whose incident was already announced.
    return [m for m in (notices.stage(session, e) for e in messages if e is not None) if m is not None]
