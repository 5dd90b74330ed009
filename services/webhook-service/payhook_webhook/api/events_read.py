"""Reading events and what became of them: ``GET /v1/events``, an event, its deliveries, attempts, endpoint stats.

Every read is narrowed to the caller's merchant for a merchant key (``Scope``),
so another merchant's event, delivery or endpoint answers 404 exactly as an
unknown id does. Lists are keyset-paginated newest first (``?limit=&after=``,
``has_more`` and ``next_after``), as the dead-letter list is, and every filter
is answered from an index (tests/shared/test_query_plans.py holds them to it).
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from flask import Blueprint, current_app, jsonify
from marshmallow import Schema, ValidationError, fields, validate, validates
from sqlalchemy import Select, and_, exists, func, select, tuple_
from sqlalchemy.orm import Session, load_only, selectinload

from payhook_shared.callbacks.mpesa import C2B_CONFIRMATION, C2B_VALIDATION
from payhook_shared.events import webhook_body
from payhook_shared.money import format_amount
from payhook_shared.store import Delivery, DeliveryAttempt, Event, JobState
from payhook_shared.store.models import utcnow

from .. import auth
from ..errors import NotFound
from ..reads import RARE_SUFFIX_DIGITS, Scope, phone_suffix, received_between
from .deliveries import delivery_json
from ..schemas import DEFAULT_PAGE, MAX_PAGE, query
from ..services.common import iso
from ..services.endpoints import SUCCESS, WINDOWS, circuit_state, endpoint_in_scope, window_stats

bp = Blueprint("events_read", __name__, url_prefix="/v1")
bp.before_request(auth.require_api_key)

PENDING, SENDING, DONE, DEAD = (s.value for s in (JobState.PENDING, JobState.SENDING, JobState.DONE, JobState.DEAD))
#: The ``delivery`` filter: what became of an event's deliveries.
DELIVERY_STATES = ("delivered", "failing", "dead", "undelivered")
#: The windows of an endpoint's stats.
_C2B_TYPES = (C2B_CONFIRMATION, C2B_VALIDATION)


def _store():
    return current_app.extensions["payhook.store"]


def _scope() -> Scope:
    return Scope.of(auth.current_principal())


class EventListQuerySchema(Schema):
    limit = fields.Integer(load_default=DEFAULT_PAGE, validate=validate.Range(1, MAX_PAGE))
    after = fields.String(load_default=None, validate=validate.Length(1, 40))
    merchant_id = fields.String(load_default=None, validate=validate.Length(1, 40))
    type = fields.String(load_default=None, validate=validate.Length(1, 100))
    status = fields.String(load_default=None, validate=validate.Length(1, 20))
    provider = fields.String(load_default=None, validate=validate.Length(1, 40))
    since = fields.AwareDateTime(load_default=None, default_timezone=dt.timezone.utc)
    until = fields.AwareDateTime(load_default=None, default_timezone=dt.timezone.utc)
    receipt = fields.String(load_default=None, validate=validate.Length(1, 100))
    reference = fields.String(load_default=None, validate=validate.Length(1, 200))
    bill_ref = fields.String(load_default=None, validate=validate.Length(1, 200))
    phone_suffix = fields.String(load_default=None, validate=validate.Regexp(
        r"^[0-9]{1,15}$", error="must be 1 to 15 digits"))
    delivery = fields.String(load_default=None, validate=validate.OneOf(DELIVERY_STATES))


class AttemptQuerySchema(Schema):
    limit = fields.Integer(load_default=DEFAULT_PAGE, validate=validate.Range(1, MAX_PAGE))
    after = fields.String(load_default=None)
    # success, failure (anything but success), or one category (timeout, server_error, …).
    outcome = fields.String(load_default=None, validate=validate.Regexp(
        r"^[a-z_]{1,20}$", error="must be success, failure or an attempt category"))

    @validates("after")
    def _after_is_an_attempt(self, value: str | None, **kwargs: Any) -> None:
        if value is not None and not (value.isdigit() and len(value) <= 18):
            raise ValidationError("must be the next_after of the previous page")


# -- the statements -----------------------------------------------------------------------------

def _with_deliveries(scope: Scope, merchant: str | None, *conditions: Any) -> Any:
    """Events that have a delivery matching ``conditions``, found from the deliveries' indexes."""
    stmt = scope.only(select(Delivery.event_id), Delivery.merchant_id).where(*conditions)
    if merchant:
        stmt = stmt.where(Delivery.merchant_id == merchant)
    return Event.id.in_(stmt)


def _delivery_filter(scope: Scope, merchant: str | None, state: str) -> Any:
    """Events by what became of their deliveries.

    ``dead``: one gave up; ``undelivered``: one is still waiting; ``failing``: one waits for a retry after a
    failed attempt. The three are rare and found from the deliveries' state indexes; ``delivered`` (every
    delivery done) is the common case, found walking the events newest first.
    """
    if state == "dead":
        return _with_deliveries(scope, merchant, Delivery.state == DEAD)
    if state == "undelivered":
        return _with_deliveries(scope, merchant, Delivery.state.in_((PENDING, SENDING)))
    if state == "failing":
        return _with_deliveries(scope, merchant, Delivery.state == PENDING, Delivery.attempts > Delivery.round_start)
    done = exists().where(Delivery.event_id == Event.id, Delivery.state == DONE)
    unfinished = exists().where(Delivery.event_id == Event.id, Delivery.state != DONE)
    return and_(done, ~unfinished)


def events_statement(scope: Scope, filters: dict[str, Any], dialect: str = "postgresql") -> Select:
    """Events matching the ``GET /v1/events`` filters, unordered.

    A received range also bounds the ids (they start with the time they were minted), so the newest-first
    walk starts at the range instead of at today.
    """
    stmt = scope.only(select(Event), Event.merchant_id)
    merchant = scope.merchant_filter(filters.get("merchant_id"))
    if merchant:
        stmt = stmt.where(Event.merchant_id == merchant)
    for name, column in (("type", Event.type), ("status", Event.status), ("provider", Event.provider),
                         ("receipt", Event.receipt), ("reference", Event.provider_key)):
        if filters.get(name):
            stmt = stmt.where(column == filters[name])
    if filters.get("bill_ref"):
        # A C2B payment keeps the account number the customer typed as its reference.
        stmt = stmt.where(Event.reference == filters["bill_ref"], Event.type.in_(_C2B_TYPES))
    if filters.get("phone_suffix"):
        stmt = stmt.where(phone_suffix(dialect, filters["phone_suffix"]))
    stmt = received_between(stmt, filters.get("since"), filters.get("until"))
    if filters.get("delivery"):
        stmt = stmt.where(_delivery_filter(scope, merchant, filters["delivery"]))
    return stmt


#: Filters that narrow the events themselves; without any, ``delivery=dead`` is read from the dead deliveries.
NARROWING = ("type", "status", "provider", "receipt", "reference", "bill_ref", "phone_suffix", "since", "until")


def dead_event_ids_statement(scope: Scope, merchant: str | None, after: str | None, limit: int) -> Select:
    """The newest ids of events with a dead delivery, from the dead deliveries' ``event_id`` indexes.

    Bounded by the page, not by how many dead letters there are: the walk stops once the page is full.
    """
    stmt = scope.only(select(Delivery.event_id).distinct(), Delivery.merchant_id).where(Delivery.state == DEAD)
    if merchant:
        stmt = stmt.where(Delivery.merchant_id == merchant)
    if after:
        stmt = stmt.where(Delivery.event_id < after)
    return stmt.order_by(Delivery.event_id.desc()).limit(limit)


#: What a list shows of an event: the raw payload and the JSON columns stay in the database.
LIST_COLUMNS = (Event.id, Event.merchant_id, Event.provider, Event.type, Event.status, Event.amount_minor,
                Event.currency, Event.receipt, Event.reference, Event.provider_key, Event.phone, Event.received_at)


def event_summary(event: Event, deliveries: list[Any]) -> dict[str, Any]:
    """An event as a list shows it, with what became of its ``deliveries`` (rows with state and attempts)."""
    amount = (format_amount(event.amount_minor, event.currency)
              if event.amount_minor is not None and event.currency else None)
    return {"id": event.id, "merchant_id": event.merchant_id, "provider": event.provider, "type": event.type,
            "status": event.status, "amount": str(amount) if amount is not None else None,
            "amount_minor": event.amount_minor, "currency": event.currency,
            "receipt": event.receipt, "reference": event.reference, "provider_key": event.provider_key,
            "phone": event.phone, "received_at": iso(event.received_at),
            "delivery_status": delivery_status(deliveries)}


def page_deliveries(session: Session, event_ids: list[str]) -> dict[str, list[Any]]:
    """The deliveries of a page of events, by event: one query, from the ``(event_id, endpoint_id)`` index."""
    by_event: dict[str, list[Any]] = {event_id: [] for event_id in event_ids}
    if event_ids:
        rows = session.execute(select(Delivery.event_id, Delivery.state, Delivery.attempts, Delivery.round_start)
                               .where(Delivery.event_id.in_(event_ids)))
        for row in rows:
            by_event[row.event_id].append(row)
    return by_event


def attempt_json(attempt: DeliveryAttempt) -> dict[str, Any]:
    """One delivery attempt as the API shows it."""
    return {"id": attempt.id, "delivery_id": attempt.delivery_id, "endpoint_id": attempt.endpoint_id,
            "number": attempt.number, "started_at": iso(attempt.started_at), "duration_ms": attempt.duration_ms,
            "status_code": attempt.status_code, "category": attempt.category, "error": attempt.error,
            "response_snippet": attempt.response_snippet}


def delivery_status(deliveries: list[Any]) -> str:
    """What became of an event's deliveries (``Delivery`` rows, or rows of their state and attempts), in the words of the ``delivery`` filter (``none``: no endpoint)."""
    states = {d.state for d in deliveries}
    if not states:
        return "none"
    if DEAD in states:
        return "dead"
    if any(d.state == PENDING and d.attempts > d.round_start for d in deliveries):
        return "failing"
    return "delivered" if states == {DONE} else "undelivered"


def _event(session: Session, scope: Scope, event_id: str, *options: Any) -> Event:
    row = session.scalar(scope.only(select(Event), Event.merchant_id).where(Event.id == event_id).options(*options))
    if row is None:
        raise NotFound(f"no event {event_id}")
    return row


def _delivery(session: Session, scope: Scope, delivery_id: str) -> Delivery:
    row = session.scalar(scope.only(select(Delivery), Delivery.merchant_id).where(Delivery.id == delivery_id))
    if row is None:
        raise NotFound(f"no delivery {delivery_id}")
    return row


def _keyset(rows: list[Any], limit: int, key) -> dict[str, Any]:
    more = len(rows) > limit
    rows = rows[:limit]
    return {"has_more": more, "next_after": key(rows[-1]) if more else None, "rows": rows}


# -- routes -------------------------------------------------------------------------------------

@bp.get("/events")
def list_events():
    """Events matching the filters, newest first, keyset-paginated."""
    params = query(EventListQuerySchema())
    scope = _scope()
    if not scope.is_admin and params["merchant_id"] not in (None, scope.merchant_id):
        raise NotFound(f"no merchant {params['merchant_id']}")
    with _store().read() as session:
        dialect = session.get_bind().dialect.name
        if params["delivery"] == "dead" and not any(params[name] for name in NARROWING):
            # The page's ids first, walking the dead deliveries newest first; a semi-join would read them all.
            page_ids = list(session.scalars(dead_event_ids_statement(
                scope, scope.merchant_filter(params["merchant_id"]), params["after"], params["limit"] + 1)))
            stmt = scope.only(select(Event), Event.merchant_id).where(Event.id.in_(page_ids))
        else:
            stmt = events_statement(scope, params, dialect)
        stmt = stmt.options(load_only(*LIST_COLUMNS))
        if params["after"]:
            stmt = stmt.where(Event.id < params["after"])
        sort_key = Event.id
        if len(params["phone_suffix"] or "") >= RARE_SUFFIX_DIGITS and dialect == "postgresql":
            # As the console's list: leaves PostgreSQL one plan, the few matches from the phone index, sorted.
            sort_key = Event.id.concat("")
        rows = list(session.scalars(stmt.order_by(sort_key.desc()).limit(params["limit"] + 1)))
        page = _keyset(rows, params["limit"], lambda e: e.id)
        deliveries = page_deliveries(session, [e.id for e in page["rows"]])
        return jsonify(data=[event_summary(e, deliveries[e.id]) for e in page["rows"]], has_more=page["has_more"],
                       next_after=page["next_after"])


@bp.get("/events/<event_id>")
def get_event(event_id: str):
    """One event: its webhook ``data``, its raw payload verbatim, and its deliveries with their attempts."""
    with _store().read() as session:
        event = _event(session, _scope(), event_id, selectinload(Event.deliveries).selectinload(Delivery.attempt_log))
        document = json.loads(webhook_body(event))
        return jsonify({
            "id": event.id, "merchant_id": event.merchant_id, "type": event.type,
            "received_at": iso(event.received_at), "priority": event.priority,
            "provider_key": event.provider_key, "delivery_status": delivery_status(event.deliveries),
            "data": document["data"], "raw_payload": event.raw_payload,
            "deliveries": [{**delivery_json(d), "attempt_log": [attempt_json(a) for a in d.attempt_log]}
                           for d in event.deliveries],
        })


@bp.get("/events/<event_id>/deliveries")
def list_event_deliveries(event_id: str):
    """An event's deliveries, one per endpoint, with their state."""
    with _store().read() as session:
        event = _event(session, _scope(), event_id, selectinload(Event.deliveries))
        return jsonify(data=[delivery_json(d) for d in event.deliveries])


@bp.get("/deliveries/<delivery_id>/attempts")
def list_delivery_attempts(delivery_id: str):
    """Every attempt of a delivery, oldest first: time, category, status, duration and the response's start."""
    with _store().read() as session:
        delivery = _delivery(session, _scope(), delivery_id)
        attempts = session.scalars(select(DeliveryAttempt).where(DeliveryAttempt.delivery_id == delivery.id)
                                   .order_by(DeliveryAttempt.id))
        return jsonify(data=[attempt_json(a) for a in attempts])


def _outcome(outcome: str) -> Any:
    if outcome == SUCCESS:
        return DeliveryAttempt.category == SUCCESS
    failed = DeliveryAttempt.category != SUCCESS  # the predicate of ix_delivery_attempts_endpoint_failed
    return failed if outcome == "failure" else and_(failed, DeliveryAttempt.category == outcome)


def endpoint_attempts_statement(endpoint_id: str, outcome: str | None, after: tuple[dt.datetime, int] | None,
                                limit: int) -> Select:
    """An endpoint's attempts newest first, from ``ix_delivery_attempts_endpoint_started``."""
    stmt = select(DeliveryAttempt).where(DeliveryAttempt.endpoint_id == endpoint_id)
    if outcome:
        stmt = stmt.where(_outcome(outcome))
    if after is not None:
        stmt = stmt.where(tuple_(DeliveryAttempt.started_at, DeliveryAttempt.id) < tuple_(*after))
    return stmt.order_by(DeliveryAttempt.started_at.desc(), DeliveryAttempt.id.desc()).limit(limit)


@bp.get("/endpoints/<endpoint_id>/attempts")
def list_endpoint_attempts(endpoint_id: str):
    """An endpoint's recent attempts, newest first, optionally by ``outcome``; keyset-paginated."""
    params = query(AttemptQuerySchema())
    with _store().read() as session:
        endpoint = endpoint_in_scope(session, _scope(), endpoint_id)
        after = None
        if params["after"]:
            # The page ends at an attempt of this endpoint; another endpoint's attempt id is no cursor here.
            started = session.scalar(select(DeliveryAttempt.started_at).where(
                DeliveryAttempt.id == int(params["after"]), DeliveryAttempt.endpoint_id == endpoint.id))
            if started is None:
                raise NotFound(f"no attempt {params['after']}")
            after = (started, int(params["after"]))
        rows = list(session.scalars(endpoint_attempts_statement(endpoint.id, params["outcome"], after,
                                                                params["limit"] + 1)))
        page = _keyset(rows, params["limit"], lambda a: str(a.id))
        return jsonify(data=[attempt_json(a) for a in page["rows"]], has_more=page["has_more"],
                       next_after=page["next_after"])


@bp.get("/endpoints/<endpoint_id>/stats")
def endpoint_stats(endpoint_id: str):
    """An endpoint's health: attempts over the last hour and day, its circuit, and deliveries waiting."""
    now = utcnow()
    with _store().read() as session:
        endpoint = endpoint_in_scope(session, _scope(), endpoint_id)
        waiting = session.scalar(select(func.count()).select_from(Delivery).where(
            Delivery.state.in_((PENDING, SENDING)), Delivery.endpoint_id == endpoint.id))
        return jsonify({
            "endpoint_id": endpoint.id,
            "windows": {name: window_stats(session, endpoint.id, now - span) for name, span in WINDOWS.items()},
            "circuit": {"state": circuit_state(endpoint, now), "open_until": iso(endpoint.circuit_open_until),
                        "consecutive_failures": endpoint.consecutive_failures,
                        "failing_since": iso(endpoint.failing_since)},
            "enabled": endpoint.enabled, "disabled_reason": endpoint.disabled_reason,
            "deliveries_waiting": waiting,
        })
