"""Payhook's own events about a merchant's endpoints, deliveries and unresolved payments, delivered as webhooks.

An endpoint subscribes by listing an operational type in its ``event_types``
(they are opt-in: an endpoint taking "every type" expects payments). The
delivery-worker stages one in the same transaction as the state change it
reports — the circuit opening, the endpoint disabled, its recovery, a
delivery dying; the webhook-service's reconciler a payment intent ending
``unknown``, or a QueueTimeOut's status check — so a committed change always has its event, and an event
never reports a change that rolled back. The event is stored like any other
(provider ``payhook``, the facts in ``details``) and its deliveries are signed
and retried like any webhook.

Never about the endpoint itself to that endpoint: an endpoint that is failing
would not hear it, and a disabled one takes nothing. Nor is one raised about a
delivery of an operational or test event, so two failing subscribers cannot
feed each other an endless stream.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import dramatiq
from sqlalchemy import insert, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from . import ids, jobs
from .events import FAILED, PAYHOOK, SUCCEEDED, UNKNOWN, NormalisedEvent, is_test
from .messages import DeliverWebhook
from .notices import safe_url
from .priority import Priority
from .store import Delivery, Endpoint, Event

PROVIDER = "payhook"
ENDPOINT_FAILING = "payhook.endpoint.failing"
ENDPOINT_DISABLED = "payhook.endpoint.disabled"
ENDPOINT_RECOVERED = "payhook.endpoint.recovered"
DELIVERY_DEAD = "payhook.delivery.dead"
PAYMENT_UNRESOLVED = "payhook.payment.unresolved"
TRANSACTION_UNRESOLVED = "payhook.transaction.unresolved"
TYPES = (ENDPOINT_FAILING, ENDPOINT_DISABLED, ENDPOINT_RECOVERED, DELIVERY_DEAD, PAYMENT_UNRESOLVED,
         TRANSACTION_UNRESOLVED)
#: The types about a payment rather than an endpoint.
ABOUT_PAYMENTS = frozenset({PAYMENT_UNRESOLVED, TRANSACTION_UNRESOLVED})
#: Prefix of every type Payhook raises about itself; deliveries of these raise no further events.
PREFIX = "payhook."
#: Endpoint trouble travels ahead of ordinary payments.
PRIORITY = Priority.HIGH
#: A payment whose outcome nobody knows is as urgent as an unknown callback (``priority_rules``).
PRIORITIES = {PAYMENT_UNRESOLVED: Priority.URGENT, TRANSACTION_UNRESOLVED: Priority.URGENT}

_INSERT = {"postgresql": pg_insert, "sqlite": sqlite_insert}


def _iso(value: dt.datetime | None) -> str | None:
    return value.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z") if value else None


def _endpoint(endpoint: Any) -> dict[str, Any]:
    return {"endpoint_id": endpoint.id, "endpoint_url": safe_url(endpoint.url),
            "endpoint_description": endpoint.description or ""}


def endpoint_failing(endpoint: Any, *, incident_started_at: dt.datetime, failures: int,
                     last_error: str | None) -> NormalisedEvent:
    """The endpoint failed ``failures`` times in a row and its circuit opened; one per incident."""
    return NormalisedEvent(
        provider=PROVIDER, source=PAYHOOK, type=ENDPOINT_FAILING, status=FAILED, occurred_at=incident_started_at,
        dedupe_key=f"{ENDPOINT_FAILING}:{endpoint.id}:{_iso(incident_started_at)}",
        details={**_endpoint(endpoint), "failures": failures, "failing_since": _iso(incident_started_at),
                 "last_error": last_error})


def endpoint_disabled(endpoint: Any, *, disabled_at: dt.datetime, reason: str) -> NormalisedEvent:
    """Payhook disabled the endpoint (410 Gone, or failing for too long); webhooks to it have stopped."""
    return NormalisedEvent(
        provider=PROVIDER, source=PAYHOOK, type=ENDPOINT_DISABLED, status=FAILED, occurred_at=disabled_at,
        dedupe_key=f"{ENDPOINT_DISABLED}:{endpoint.id}:{_iso(disabled_at)}",
        details={**_endpoint(endpoint), "disabled_at": _iso(disabled_at), "reason": reason})


def endpoint_recovered(endpoint: Any, *, failing_since: dt.datetime | None, recovered_at: dt.datetime,
                       failures: int) -> NormalisedEvent:
    """The endpoint answered again after its circuit had opened."""
    return NormalisedEvent(
        provider=PROVIDER, source=PAYHOOK, type=ENDPOINT_RECOVERED, status=SUCCEEDED, occurred_at=recovered_at,
        # One per incident: keyed by when the endpoint started failing.
        dedupe_key=f"{ENDPOINT_RECOVERED}:{endpoint.id}:{_iso(failing_since or recovered_at)}",
        details={**_endpoint(endpoint), "failing_since": _iso(failing_since), "recovered_at": _iso(recovered_at),
                 "failures": failures})


def delivery_dead(endpoint: Any, *, delivery_id: str, event_id: str, event_type: str, attempts: int,
                  category: str, last_status: int | None, last_error: str | None,
                  dead_at: dt.datetime) -> NormalisedEvent:
    """A delivery gave up and is kept as a dead letter (retry it with ``POST /v1/deliveries/<id>/retry``)."""
    return NormalisedEvent(
        provider=PROVIDER, source=PAYHOOK, type=DELIVERY_DEAD, status=FAILED, occurred_at=dead_at,
        dedupe_key=f"{DELIVERY_DEAD}:{delivery_id}:{_iso(dead_at)}",
        details={**_endpoint(endpoint), "delivery_id": delivery_id, "event_id": event_id,
                 "event_type": event_type, "attempts": attempts, "category": category,
                 "last_status": last_status, "last_error": last_error, "dead_at": _iso(dead_at)})


def payment_unresolved(*, intent_id: str, checkout_request_id: str, account_reference: str | None,
                       amount_minor: int | None, created_at: dt.datetime, checks: int, reason: str,
                       at: dt.datetime) -> NormalisedEvent:
    """An STK Push's callback never came and Daraja's STK Push Query gave no final answer: the intent is ``unknown``."""
    return NormalisedEvent(
        provider=PROVIDER, source=PAYHOOK, type=PAYMENT_UNRESOLVED, status=UNKNOWN, occurred_at=at,
        dedupe_key=f"{PAYMENT_UNRESOLVED}:{intent_id}", reference=checkout_request_id,
        amount_minor=amount_minor, currency="KES" if amount_minor is not None else None,
        provider_ids={"CheckoutRequestID": checkout_request_id},
        details={"intent_id": intent_id, "checkout_request_id": checkout_request_id,
                 "account_reference": account_reference, "pushed_at": _iso(created_at), "checks": checks,
                 "reason": reason, "unresolved_at": _iso(at)})


def transaction_unresolved(*, check_id: str, event_id: str, event_type: str, originator_conversation_id: str,
                           timed_out_at: dt.datetime, queries: int, reason: str, at: dt.datetime) -> NormalisedEvent:
    """A B2C, B2B or reversal came as a QueueTimeOut and Transaction Status gave no final answer: still ``unknown``."""
    return NormalisedEvent(
        provider=PROVIDER, source=PAYHOOK, type=TRANSACTION_UNRESOLVED, status=UNKNOWN, occurred_at=at,
        dedupe_key=f"{TRANSACTION_UNRESOLVED}:{check_id}",
        provider_ids={"OriginatorConversationID": originator_conversation_id},
        details={"check_id": check_id, "event_id": event_id, "event_type": event_type,
                 "originator_conversation_id": originator_conversation_id, "timed_out_at": _iso(timed_out_at),
                 "queries": queries, "reason": reason, "unresolved_at": _iso(at)})


def raises_events(event_type: str, dedupe_key: str) -> bool:
    """Whether trouble delivering an event of this kind raises operational events (not for ours, nor tests)."""
    return not event_type.startswith(PREFIX) and not is_test(dedupe_key)


def stage(session: Session, merchant_id: str, event: NormalisedEvent, *, about_endpoint_id: str | None,
          now: dt.datetime) -> list[dramatiq.Message]:
    """Record ``event`` and its deliveries in ``session``'s transaction; the messages to send once it commits.

    Delivered to the merchant's enabled endpoints that list ``event.type``,
    except ``about_endpoint_id`` (``None`` for an event about no endpoint). Records nothing when no endpoint
    subscribes, or when the same event (its dedupe key) was recorded already.
    """
    rows = session.execute(select(Endpoint.id, Endpoint.event_types).where(
        Endpoint.merchant_id == merchant_id, Endpoint.enabled.is_(True))).all()
    targets = [endpoint_id for endpoint_id, types in rows
               if types and event.type in types and endpoint_id != about_endpoint_id]
    priority = PRIORITIES.get(event.type, PRIORITY)
    if not targets:
        return []
    event_id = ids.new_id("evt")
    values = {"id": event_id, "merchant_id": merchant_id, "provider": event.provider, "type": event.type,
              "status": event.status, "dedupe_key": event.dedupe_key, "provider_ids": event.provider_ids,
              "occurred_at": event.occurred_at, "details": event.details, "received_at": now, "source": event.source,
              "priority": int(priority), "raw_payload": "{}", "reference": event.reference,
              "amount_minor": event.amount_minor, "currency": event.currency}
    stmt = (_INSERT[session.get_bind().dialect.name](Event).values(**values)
            .on_conflict_do_nothing(index_elements=["merchant_id", "dedupe_key"]).returning(Event.id))
    if session.execute(stmt).scalar_one_or_none() is None:
        return []
    messages, deliveries = [], []
    for endpoint_id in targets:
        delivery_id = ids.new_id("dlv")
        message = jobs.plan(DeliverWebhook(delivery_ids=(delivery_id,), priority=priority))
        deliveries.append(jobs.new_row(message, now, id=delivery_id, event_id=event_id, endpoint_id=endpoint_id,
                                       merchant_id=merchant_id, priority=int(priority), round_start=0))
        messages.append(message)
    session.execute(insert(Delivery), deliveries)
    return messages
