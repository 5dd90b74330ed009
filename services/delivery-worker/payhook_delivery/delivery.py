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
from sqlalchemy.exc import SQLAlchemyError

from payhook_shared import endpoint_headers, jobs, notices, operational, signing
from payhook_shared.events import is_test, webhook_body
from payhook_shared.logs import bind
from payhook_shared.messages import DeliverWebhook
from payhook_shared.store import Delivery, DeliveryAttempt, Email, Endpoint, Event, JobState, Merchant, Store
from payhook_shared.store.compiled import Compiled
from payhook_shared.store.text import storable

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
                messages = _dead_event(session, delivery, endpoint, event, attempts=delivery.attempts - 1,
                                       category=Category.DISABLED.value, status=None, error="endpoint disabled",
                                       now=started)
            _enqueue(rt, messages)
            log.info("endpoint disabled; delivery kept as a dead letter for recovery")
            metrics.outcome(metrics.DEAD, message.priority)
            return Category.DISABLED.value
        # A test is the merchant asking whether the endpoint works now: it does not wait for the circuit.
        wait_until = (None if is_test(event.dedupe_key)
                      else _circuit_wait(rt.store, endpoint, started, settings.circuit_cooldown))
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
                messages = _dead_event(session, delivery, endpoint, event, attempts=delivery.attempts - 1,
                                       category=Category.TOO_LARGE.value, status=None,
                                       error=f"payload of {len(body)} bytes", now=started)
            _enqueue(rt, messages)
            log.warning("payload too large (%d bytes); delivery dead", len(body))
            metrics.outcome(metrics.DEAD, message.priority)
            return Category.TOO_LARGE.value
        # The merchant's headers go after Payhook's and never replace one (a signature header above all).
        headers = endpoint_headers.outgoing(endpoint.custom_headers,
                                            signing.headers(endpoint.signing_secrets(started), event.id, body))

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
        _record(rt, delivery, endpoint, merchant, event, attempt_no, in_round, schedule, started, result)
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


def _record(rt: Runtime, delivery: Delivery, endpoint: Endpoint, merchant: Merchant, event: Event,
            attempt_no: int, in_round: int, schedule: tuple[float, ...], started: dt.datetime,
            result: http.AttemptResult) -> None:
    """Record one attempt's outcome; once a POST has been made, only the outcome itself must reach the store."""
    settings = rt.settings
    now = rt.clock()
    # A test event gets one attempt and leaves the endpoint's health alone: it asks, it does not count.
    test = is_test(event.dedupe_key)
    outcome = metrics.DELIVERED
    # updated_at too: the one-statement record on PostgreSQL is built once and takes every value as a parameter.
    values: dict = {"lease_until": None, "last_status": result.status, "last_category": result.category.value,
                    "updated_at": now}
    if result.category is Category.SUCCESS:
        values.update(state=JobState.DONE.value, delivered_at=now, last_error=None)
        log.info("delivered on attempt %d (%s, %d ms)", attempt_no, result.status, result.duration_ms)
    else:
        error = storable(result.error) or f"HTTP {result.status}"
        delay = None if test else policy.next_delay(
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
    attempt = {"delivery_id": delivery.id, "endpoint_id": delivery.endpoint_id, "number": attempt_no, "started_at": started,
               "duration_ms": result.duration_ms, "status_code": result.status, "category": result.category.value,
               "error": storable(result.error), "response_snippet": storable(result.snippet)}
    health = not test and _health_changes(endpoint, result)
    try:
        messages = _write(rt, delivery, endpoint, merchant, event, result, values, attempt, now, health)
    except Exception:  # the database's refusal, or a value its driver cannot even encode
        # The POST happened: a row left "sending" would be claimed and POSTed again, so keep the outcome.
        log.exception("could not record attempt %d in full; recording its outcome without details", attempt_no)
        messages = _write_outcome_only(rt, delivery, endpoint, merchant, event, result, values, attempt, now,
                                       health)
    metrics.attempt(result.category.value, delivery.priority, result.duration_ms / 1000)
    metrics.outcome(outcome, delivery.priority)
    if outcome == metrics.DELIVERED:
        metrics.delivered(delivery.priority, event.received_at, now)
    _enqueue(rt, messages)


def _enqueue(rt: Runtime, messages: list[dramatiq.Message]) -> None:
    """Send the messages of a committed transaction; a lost one is the sweeper's to send."""
    for message in messages:
        try:
            rt.broker.enqueue(message)
        except Exception:
            log.warning("could not enqueue %s; the sweeper will", message.queue_name, exc_info=True)


def _write(rt: Runtime, delivery: Delivery, endpoint: Endpoint, merchant: Merchant, event: Event,
           result: http.AttemptResult, values: dict, attempt: dict, now: dt.datetime,
           health: bool) -> list[dramatiq.Message]:
    """Record the attempt and the delivery's new state, with the health change and operational events they raise.

    Returns the messages (emails, operational webhooks) to send once committed.
    """
    dead = values["state"] == JobState.DEAD.value
    if rt.store.dialect == "postgresql" and not health and not dead:
        # The attempt and the delivery's new state in one statement: one round trip, no transaction.
        statement = _recording(tuple(values), rt.store.engine.dialect)
        with rt.store.driver() as conn:
            conn.execute(statement.sql, statement.params({
                **{f"attempt_{k}": v for k, v in attempt.items()}, **values, "delivery_id": delivery.id}))
        return []
    # A health change or a dead letter: recorded in one transaction with the operational events it raises.
    with rt.store.write() as session:
        session.execute(insert(DeliveryAttempt).values(**attempt))
        _set(session, delivery.id, **values)
        messages = _update_health(session, rt.settings, endpoint, merchant, result, now) if health else []
        if dead:
            messages += _dead_event(session, delivery, endpoint, event, attempts=attempt["number"],
                                    category=result.category.value, status=result.status,
                                    error=values["last_error"], now=now)
        return messages


def _write_outcome_only(rt: Runtime, delivery: Delivery, endpoint: Endpoint, merchant: Merchant, event: Event,
                        result: http.AttemptResult, values: dict, attempt: dict, now: dt.datetime,
                        health: bool) -> list[dramatiq.Message]:
    """After ``_write`` failed: the delivery's new state first, on its own, then what else still records.

    Only a failure of the state itself propagates (the lease then frees the
    row); the attempt is logged without its error and response snippet.
    """
    bare = dict(values)
    if bare.get("last_error") is not None:  # the error's text may be what the database refused
        bare["last_error"] = f"HTTP {result.status}" if result.status is not None else result.category.value
    with rt.store.write() as session:
        _set(session, delivery.id, **bare)
        messages = (_dead_event(session, delivery, endpoint, event, attempts=attempt["number"],
                                category=result.category.value, status=result.status,
                                error=bare["last_error"], now=now)
                    if bare["state"] == JobState.DEAD.value else [])
    try:
        with rt.store.write() as session:
            session.execute(insert(DeliveryAttempt).values(**{**attempt, "error": None, "response_snippet": None}))
    except SQLAlchemyError:
        log.exception("could not log attempt %d of delivery %s", attempt["number"], delivery.id)
    return messages + (_update_health_apart(rt, endpoint, merchant, result, now) if health else [])


def _update_health_apart(rt: Runtime, endpoint: Endpoint, merchant: Merchant, result: http.AttemptResult,
                         now: dt.datetime) -> list[dramatiq.Message]:
    """``_update_health`` in its own transaction, after the outcome is recorded; a failure is logged, not raised."""
    try:
        with rt.store.write() as session:
            return _update_health(session, rt.settings, endpoint, merchant, result, now)
    except SQLAlchemyError:
        log.exception("could not update the health of endpoint %s", endpoint.id)
        return []


def _dead_event(session, delivery: Delivery, endpoint: Endpoint, event: Event, *, attempts: int, category: str,
                status: int | None, error: str | None, now: dt.datetime) -> list[dramatiq.Message]:
    """Stage ``payhook.delivery.dead`` for a delivery that just died, unless its event is ours or a test."""
    if not operational.raises_events(event.type, event.dedupe_key):
        return []
    dead = operational.delivery_dead(endpoint, delivery_id=delivery.id, event_id=event.id, event_type=event.type,
                                     attempts=attempts, category=category, last_status=status, last_error=error,
                                     dead_at=now)
    return operational.stage(session, delivery.merchant_id, dead, about_endpoint_id=endpoint.id, now=now)


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
    """Fold one attempt into the endpoint's health; the emails and operational webhooks to send after commit."""
    if result.category is Category.SUCCESS:
        if endpoint.consecutive_failures or endpoint.circuit_open_until or endpoint.failing_since:
            healthy = {"consecutive_failures": 0, "failing_since": None, "circuit_open_until": None}
            # Closing an open circuit is the recovery from an announced incident; of concurrent successes
            # only the one whose UPDATE still finds the circuit open reports it.
            recovered = session.execute(update(Endpoint).where(
                Endpoint.id == endpoint.id, Endpoint.circuit_open_until.is_not(None)).values(**healthy)
                .execution_options(synchronize_session=False)).rowcount == 1
            if not recovered:
                session.execute(update(Endpoint).where(Endpoint.id == endpoint.id).values(**healthy)
                                .execution_options(synchronize_session=False))
            log.info("endpoint %s healthy again; circuit closed", endpoint.id)
            if recovered:
                return operational.stage(session, merchant.id, operational.endpoint_recovered(
                    endpoint, failing_since=endpoint.failing_since, recovered_at=now,
                    failures=endpoint.consecutive_failures), about_endpoint_id=endpoint.id, now=now)
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
    webhooks: list[dramatiq.Message] = []
    if result.category is Category.GONE or failing_since <= now - dt.timedelta(seconds=settings.disable_after):
        reason = "the endpoint answered 410 Gone" if result.category is Category.GONE else (
            f"failing continuously since {failing_since:%Y-%m-%d %H:%M} UTC")
        session.execute(update(Endpoint).where(Endpoint.id == endpoint.id).values(
            enabled=False, disabled_at=now, disabled_reason=reason, circuit_open_until=None,
        ).execution_options(synchronize_session=False))
        log.warning("endpoint %s disabled: %s", endpoint.id, reason)
        messages.append(notices.endpoint_disabled(merchant, endpoint, disabled_at=now, reason=reason))
        webhooks = operational.stage(session, merchant.id, operational.endpoint_disabled(
            endpoint, disabled_at=now, reason=reason), about_endpoint_id=endpoint.id, now=now)
    elif failures >= settings.circuit_threshold and circuit_open_until is None:
        session.execute(update(Endpoint).where(Endpoint.id == endpoint.id).values(
            circuit_open_until=now + dt.timedelta(seconds=settings.circuit_cooldown),
        ).execution_options(synchronize_session=False))
        log.warning("endpoint %s failed %d times in a row; circuit open", endpoint.id, failures)
        messages.append(notices.endpoint_failing(merchant, endpoint, incident_started_at=failing_since,
                                                 failures=failures,
                                                 last_error=result.error or f"HTTP {result.status}"))
        # One per incident, as the email: the event's dedupe key is the incident's start.
        webhooks = operational.stage(session, merchant.id, operational.endpoint_failing(
            endpoint, incident_started_at=failing_since, failures=failures,
            last_error=result.error or f"HTTP {result.status}"), about_endpoint_id=endpoint.id, now=now)
    # One email per incident: stage() skips an email whose incident was already announced.
    return [m for m in (notices.stage(session, e) for e in messages if e is not None) if m is not None] + webhooks
