"""One delivery attempt, from claim to recorded outcome, and the endpoint's health.

Endpoint health is a circuit breaker kept in the store, so every worker
process sees the same state: ``circuit_threshold`` failures in a row open it;
while open, deliveries wait (postponed, no attempt spent); when the cool-down
passes one delivery takes the half-open probe, and its success closes the
circuit. The merchant hears once per incident (the circuit opening), and again
if the endpoint fails continuously for ``disable_after`` and is disabled.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import json
import logging
import time
import types
from collections.abc import Callable
from typing import Any

import dramatiq
from sqlalchemy import any_, bindparam, func, insert, select, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import InterfaceError, OperationalError, SQLAlchemyError

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
# Seconds before a claim's lease ends when a worker stops waiting for the database to record an outcome.
LEASE_SAFETY_SECONDS = 5.0


def deliver(rt: Runtime, message: DeliverWebhook) -> dict[str, str]:
    """Attempt the deliveries ``message`` names; returns each one's outcome by id: the attempt's category,
    ``"skipped"``, ``"waiting"`` or ``"deferred"``.

    Skips a delivery that is not ours to attempt — already delivered, dead,
    not yet due, or claimed by another worker — so a duplicate message never
    sends twice. Without spending an attempt, a delivery waits while its
    endpoint's circuit is open, and is deferred when the endpoint is at its
    rate limit or concurrency cap. The message's deliveries are claimed in one
    statement, POSTed side by side, and their plain outcomes (a success, or a
    retry that changes no endpoint's health) recorded in one statement.
    """
    started = rt.clock()
    claimed = _claim(rt.store, message.delivery_ids, dt.timedelta(seconds=rt.settings.lease_seconds), started)
    outcomes: dict[str, str] = {}
    for delivery_id in set(message.delivery_ids) - {loaded[0].id for loaded in claimed}:
        with bind(delivery_id=delivery_id):
            log.debug("delivery not due or already handled; skipping")
        metrics.outcome(SKIPPED, message.priority)
        outcomes[delivery_id] = SKIPPED
    if len(claimed) == 1:
        tried = [_attempt_or_error(rt, claimed[0], started)]
    else:
        tried = list(rt.posts.map(lambda loaded: _attempt_or_error(rt, loaded, started), claimed))
    failures = [t for t in tried if isinstance(t, BaseException)]
    attempts = [t for t in tried if isinstance(t, _Tried)]
    outcomes.update((loaded[0].id, t) for loaded, t in zip(claimed, tried) if isinstance(t, str))
    outcomes.update((t.delivery.id, t.result.category.value) for t in attempts)
    _record_all(rt, attempts)
    if failures:  # the rest are recorded; these deliveries' claims free themselves at the lease's end
        raise failures[0]
    return outcomes


@dataclasses.dataclass(frozen=True)
class _Tried:
    """One attempt made and not yet recorded, with what its record needs."""

    delivery: Any
    endpoint: Any
    merchant: Any
    event: Any
    attempt_no: int
    in_round: int
    schedule: tuple[float, ...]
    started: dt.datetime
    result: http.AttemptResult


def _attempt_or_error(rt: Runtime, loaded: tuple[Any, Any, Any, Any], started: dt.datetime) -> str | _Tried | Exception:
    """``_attempt``, with an error returned rather than raised, so it costs no other delivery of the message its record."""
    delivery, _, event, _ = loaded
    with bind(delivery_id=delivery.id, event_id=event.id, merchant_id=delivery.merchant_id):
        try:
            return _attempt(rt, loaded, started)
        except Exception as exc:
            log.exception("delivery attempt failed before its outcome was known; its claim frees at the lease's end")
            return exc


def _attempt(rt: Runtime, loaded: tuple[Any, Any, Any, Any], started: dt.datetime) -> str | _Tried:
    """Attempt one claimed delivery: the POST made (``_Tried``), or why not (recorded already)."""
    settings = rt.settings
    delivery, endpoint, event, merchant = loaded
    priority = delivery.priority
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
        metrics.outcome(metrics.DEAD, priority)
        return Category.DISABLED.value
    # A test is the merchant asking whether the endpoint works now: it does not wait for the circuit.
    wait_until = (None if is_test(event.dedupe_key)
                  else _circuit_wait(rt.store, endpoint, started, settings.circuit_cooldown))
    if wait_until is not None:
        with rt.store.write() as session:
            jobs.release(session, Delivery, delivery.id, wait_until)
        log.debug("circuit open for endpoint %s; waiting until %s", endpoint.id, wait_until.isoformat())
        metrics.outcome(WAITING, priority)
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
        metrics.outcome(metrics.DEAD, priority)
        return Category.TOO_LARGE.value
    # The merchant's headers go after Payhook's and never replace one (a signature header above all).
    headers = endpoint_headers.outgoing(endpoint.custom_headers,
                                        signing.headers(endpoint.signing_secrets(started), event.id, body))

    with rt.limiter.slot(endpoint.id, endpoint.rate_limit_per_second, endpoint.max_in_flight) as grant:
        if not grant.granted:
            limits.defer(rt.store, delivery.id, grant.wait, rt.clock())
            metrics.outcome(DEFERRED, priority)
            return DEFERRED
        result = http.post(
            rt.http, endpoint.url, body, headers, connect_timeout=settings.connect_timeout,
            total_timeout=settings.total_timeout, snippet_bytes=settings.response_snippet_bytes,
            allow=settings.endpoint_allowlist,
        )
    return _Tried(delivery, endpoint, merchant, event, attempt_no, in_round, schedule, started, result)


def _claim(store: Store, delivery_ids: tuple[str, ...], lease: dt.timedelta,
           now: dt.datetime) -> list[tuple[Any, Any, Any, Any]]:
    """Claim the deliveries that are ours and load each with its endpoint, event and merchant.

    On PostgreSQL the claim and the load are one statement for them all (the
    UPDATE in a CTE, joined) run on the driver connection, so one round trip
    and no ORM; the rows come back as detached, read-only copies. A claim holds
    its row by its lease, not by a transaction.
    """
    if store.dialect == "postgresql":
        statement = _claim_and_load(store.engine.dialect)
        with store.driver() as conn:
            rows = conn.execute(statement.sql, statement.params(
                {"delivery_ids": list(delivery_ids), "lease_until": now + lease, "now": now})).fetchall()
        return [statement.objects(row) for row in rows]
    claimed = []
    with store.write() as session:
        for delivery_id in dict.fromkeys(delivery_ids):
            params = {"delivery_id": delivery_id, "lease_until": now + lease, "now": now}
            if session.execute(_claiming(), params).rowcount == 1:
                claimed.append(tuple(session.execute(_loading().where(Delivery.id == delivery_id)).one()))
    return claimed


class _EndpointRow(types.SimpleNamespace):
    """An endpoint's columns as the claim read them, detached from any session."""

    signing_secrets = Endpoint.signing_secrets


# Built once: an ORM statement over a CTE costs more to construct than to run.
@functools.cache
def _claiming() -> Any:
    return jobs.claiming(Delivery, bindparam("delivery_id"), bindparam("lease_until"), bindparam("now"))


@functools.cache
def _claim_and_load(dialect: Any) -> Compiled:
    ids = any_(bindparam("delivery_ids", type_=postgresql.ARRAY(Delivery.__table__.c.id.type)))
    claimed = (jobs.claiming(Delivery, ids, bindparam("lease_until"), bindparam("now"))
               .returning(*Delivery.__table__.columns).cte("claimed"))
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


@dataclasses.dataclass
class _Record:
    """What recording one attempt writes: the delivery's new values and the attempt's row."""

    tried: _Tried
    values: dict[str, Any]
    attempt: dict[str, Any]
    outcome: str
    health: bool

    @property
    def plain(self) -> bool:
        """Whether this record changes only its own rows (no endpoint health, no dead letter)."""
        return not self.health and self.values["state"] != JobState.DEAD.value


def _record_all(rt: Runtime, attempts: list[_Tried]) -> None:
    """Record attempts' outcomes; once a POST has been made, only the outcome itself must reach the store.

    Plain outcomes are written together; a health change or a dead letter each in a transaction of its own
    with the operational events it raises.
    """
    now = rt.clock()
    records = [_decide(rt, tried, now) for tried in attempts]
    alone = records
    plain = [r for r in records if r.plain]
    if len(plain) > 1 and rt.store.dialect == "postgresql":
        try:
            _write_plain(rt, [(r.values, r.attempt) for r in plain])
            alone = [r for r in records if not r.plain]
        except Exception:  # one row's details, or the database: each on its own below, with the fallbacks
            log.exception("could not record %d attempts together; recording them one by one", len(plain))
    messages = [m for record in alone for m in _record_one(rt, record, now)]
    for record in records:
        _observe(record)
    _enqueue(rt, messages)


def _decide(rt: Runtime, tried: _Tried, now: dt.datetime) -> _Record:
    """The delivery's new state after ``tried``: done, retried on schedule or dead."""
    settings, result = rt.settings, tried.result
    delivery = tried.delivery
    with bind(delivery_id=delivery.id, event_id=tried.event.id, merchant_id=delivery.merchant_id):
        # A test event gets one attempt and leaves the endpoint's health alone: it asks, it does not count.
        test = is_test(tried.event.dedupe_key)
        outcome = metrics.DELIVERED
        # updated_at too: the one-statement record on PostgreSQL is built once and takes every value as a parameter.
        values: dict = {"lease_until": None, "last_status": result.status, "last_category": result.category.value,
                        "updated_at": now}
        if result.category is Category.SUCCESS:
            values.update(state=JobState.DONE.value, delivered_at=now, last_error=None)
            log.info("delivered on attempt %d (%s, %d ms)", tried.attempt_no, result.status, result.duration_ms)
        else:
            error = storable(result.error) or f"HTTP {result.status}"
            delay = None if test else policy.next_delay(
                tried.in_round, result.category, tried.schedule, settings.retry_jitter,
                retry_after=policy.parse_retry_after(result.retry_after, now),
                retry_after_bounds=(settings.retry_after_min, settings.retry_after_max),
            )
            if delay is None:
                values.update(state=JobState.DEAD.value, dead_at=now, last_error=error)
                outcome = metrics.DEAD
                log.warning("delivery dead after attempt %d (%s): %s", tried.attempt_no, result.category.value,
                            error)
            else:
                # The sweeper enqueues it when due: no thread or Redis message waits meanwhile.
                values.update(state=JobState.PENDING.value, next_attempt_at=now + dt.timedelta(seconds=delay),
                              last_error=error)
                outcome = metrics.RETRY
                log.info("attempt %d failed (%s); retry in %.1f s", tried.attempt_no, result.category.value, delay)
    attempt = {"delivery_id": delivery.id, "endpoint_id": delivery.endpoint_id, "number": tried.attempt_no,
               "started_at": tried.started, "duration_ms": result.duration_ms, "status_code": result.status,
               "category": result.category.value, "error": storable(result.error),
               "response_snippet": storable(result.snippet)}
    return _Record(tried, values, attempt, outcome, not test and _health_changes(tried.endpoint, result))


def _record_one(rt: Runtime, record: _Record, now: dt.datetime) -> list[dramatiq.Message]:
    """Write one record; the messages (emails, operational webhooks) to send once committed."""
    t = record.tried
    try:
        return _write(rt, t.delivery, t.endpoint, t.merchant, t.event, t.result, record.values, record.attempt, now,
                      record.health)
    except Exception:  # the database's refusal, or a value its driver cannot even encode
        # The POST happened: a row left "sending" would be claimed and POSTed again, so keep the outcome.
        log.exception("could not record attempt %d of delivery %s in full; recording its outcome without details",
                      t.attempt_no, t.delivery.id)
        return _while_unreachable(rt, t, lambda: _write_outcome_only(
            rt, t.delivery, t.endpoint, t.merchant, t.event, t.result, record.values, record.attempt, now,
            record.health))


def _while_unreachable(rt: Runtime, tried: _Tried, write: Callable[[], list[dramatiq.Message]]
                       ) -> list[dramatiq.Message]:
    """``write``, tried again while the database cannot be reached, until shortly before the claim's lease ends.

    The POST was made: an outcome never recorded frees the row at the lease's end and the webhook is sent
    again, so during a database outage the worker holds on to it rather than give up at once.
    """
    left = rt.settings.lease_seconds - (rt.clock() - tried.started).total_seconds() - LEASE_SAFETY_SECONDS
    deadline, pause = time.monotonic() + left, 0.1
    while True:
        try:
            return write()
        except (OperationalError, InterfaceError):
            if time.monotonic() + pause >= deadline:
                raise
            log.warning("the database is unreachable; recording the outcome of delivery %s again in %.1f s",
                        tried.delivery.id, pause)
            time.sleep(pause)
            pause = min(2 * pause, 2.0)


def _observe(record: _Record) -> None:
    """Count one recorded attempt and its outcome."""
    t = record.tried
    metrics.attempt(t.result.category.value, t.delivery.priority, t.result.duration_ms / 1000)
    metrics.outcome(record.outcome, t.delivery.priority)
    if record.outcome == metrics.DELIVERED:
        metrics.delivered(t.delivery.priority, t.event.received_at, record.values["updated_at"])


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
        _write_plain(rt, [(values, attempt)])
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


def _write_plain(rt: Runtime, rows: list[tuple[dict[str, Any], dict[str, Any]]]) -> None:
    """PostgreSQL: plain records' attempts and deliveries' new states (``(values, attempt)`` each) in one statement.

    The rows travel as one JSON array: one parameter whatever the batch, which the driver passes as text
    (converting arrays of each column cost more client CPU than the statement itself).
    """
    records = json.dumps([{**{name: values.get(name) for name in _PLAIN_COLUMNS}, **attempt}
                          for values, attempt in rows], default=_json_value)
    with rt.store.driver() as conn:
        conn.execute(_RECORD_PLAIN, (records,))


def _json_value(value: Any) -> str:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON")


_PLAIN_COLUMNS = ("state", "last_status", "last_category", "last_error", "next_attempt_at", "delivered_at",
                  "updated_at")
# A success keeps its due time; a retry sets no delivered_at: NULL keeps the column.
_RECORD_PLAIN = """\
WITH record AS (
  SELECT * FROM jsonb_to_recordset(%s::jsonb) AS r(
    delivery_id varchar, endpoint_id varchar, number integer, started_at timestamptz, duration_ms integer,
    status_code smallint, category varchar, error text, response_snippet text, state varchar,
    last_status smallint, last_category varchar, last_error text, next_attempt_at timestamptz,
    delivered_at timestamptz, updated_at timestamptz)),
attempt AS (
  INSERT INTO delivery_attempts (delivery_id, endpoint_id, number, started_at, duration_ms, status_code, category,
                                 error, response_snippet)
  SELECT delivery_id, endpoint_id, number, started_at, duration_ms, status_code, category, error, response_snippet
  FROM record
  RETURNING id)
UPDATE deliveries AS d
SET state = r.state, lease_until = NULL, last_status = r.last_status, last_category = r.last_category,
    last_error = r.last_error, next_attempt_at = coalesce(r.next_attempt_at, d.next_attempt_at),
    delivered_at = coalesce(r.delivered_at, d.delivered_at), updated_at = r.updated_at
FROM record AS r
WHERE d.id = r.delivery_id"""


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
