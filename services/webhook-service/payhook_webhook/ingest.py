"""Recording an incoming event: one transaction, then the messages.

The event, one delivery per interested endpoint and any notification emails
are written together or not at all; only after the commit are the Redis
messages sent. If Redis refuses, the callback is still acknowledged — it is
recorded — and the sweeper sends the messages once Redis is back.
"""

from __future__ import annotations

import dataclasses
import logging

import dramatiq
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from payhook_shared import ids, jobs, notices
from payhook_shared.broker import RedisBroker
from payhook_shared.callbacks import inbound, mpesa
from payhook_shared.events import TEST_TYPE, NormalisedEvent
from payhook_shared.logs import bind
from payhook_shared.messages import DeliverWebhook
from payhook_shared.priority import Priority
from payhook_shared.store import Delivery, Email, Endpoint, Event, Merchant, Store

from . import metrics

log = logging.getLogger(__name__)

_INSERT = {"postgresql": pg_insert, "sqlite": sqlite_insert}

# Types delivered only to endpoints that list them: a C2B validation is not a
# payment, and an endpoint taking "every type" expects payments.
OPT_IN_TYPES = frozenset({mpesa.C2B_VALIDATION})
# Types that are not money received, so they send no "payment received" email.
NO_RECEIPT_EMAIL_TYPES = mpesa.NOT_RECEIVED_TYPES | {TEST_TYPE}


def _wants(endpoint: Endpoint, event_type: str) -> bool:
    if event_type in OPT_IN_TYPES:
        return endpoint.enabled and bool(endpoint.event_types) and event_type in endpoint.event_types
    return endpoint.accepts(event_type)


@dataclasses.dataclass
class Recorded:
    """The outcome of recording one event."""

    event_id: str
    duplicate: bool
    deliveries: int = 0
    emails: int = 0


def _insert_event(session: Session, values: dict) -> str | None:
    """Insert unless (merchant, dedupe key) exists; the new id, or ``None`` for a duplicate."""
    insert = _INSERT[session.get_bind().dialect.name]
    stmt = (
        insert(Event).values(**values)
        .on_conflict_do_nothing(index_elements=["merchant_id", "dedupe_key"])
        .returning(Event.id)
    )
    return session.execute(stmt).scalar_one_or_none()


def _existing_event_id(session: Session, merchant_id: str, dedupe_key: str) -> str:
    return session.execute(
        select(Event.id).where(Event.merchant_id == merchant_id, Event.dedupe_key == dedupe_key)
    ).scalar_one()


def record(store: Store, broker: RedisBroker, merchant: Merchant, event: NormalisedEvent,
           raw_body: bytes, priority: Priority) -> Recorded:
    """Durably record ``event`` for ``merchant`` and queue its deliveries and emails.

    A repeat of an already-recorded event (same dedupe key) changes nothing and
    reports ``duplicate=True``.
    """
    event_id = ids.new_id("evt")
    messages: list[dramatiq.Message] = []
    with store.write() as session:
        inserted = _insert_event(session, {
            **dataclasses.asdict(event),
            "id": event_id,
            "merchant_id": merchant.id,
            "priority": int(priority),
            "raw_payload": raw_body.decode("utf-8"),
        })
        if inserted is None:
            return Recorded(_existing_event_id(session, merchant.id, event.dedupe_key), duplicate=True)

        for endpoint in merchant.endpoints:
            if not _wants(endpoint, event.type):
                continue
            delivery = Delivery(id=ids.new_id("dlv"), event_id=event_id, endpoint_id=endpoint.id,
                                merchant_id=merchant.id, priority=int(priority))
            message = jobs.plan(DeliverWebhook(delivery_id=delivery.id, event_id=event_id,
                                               merchant_id=merchant.id, priority=priority))
            jobs.record(delivery, message)
            session.add(delivery)
            messages.append(message)

        for email in _notifications(merchant, event, event_id):
            staged = notices.stage(session, email)
            if staged is not None:
                messages.append(staged)

    recorded = Recorded(event_id, duplicate=False,
                        deliveries=sum(m.queue_name.startswith("delivery.") for m in messages),
                        emails=sum(m.queue_name.startswith("mail.") for m in messages))
    metrics.count_event(event.type, Priority.parse(priority).label)
    with bind(event_id=event_id, merchant_id=merchant.id):
        _send(broker, messages)
        log.info("recorded %s %s: %d deliveries, %d emails",
                 event.type, event.status, recorded.deliveries, recorded.emails)
    return recorded


def _send(broker: RedisBroker, messages: list[dramatiq.Message]) -> None:
    for message in messages:
        try:
            broker.enqueue(message)
        except Exception:
            # Recorded already: the sweeper enqueues it once Redis answers again.
            log.warning("could not enqueue %s; the sweeper will", message.queue_name, exc_info=True)
            return


def _notifications(merchant: Merchant, event: NormalisedEvent, event_id: str) -> list[Email]:
    """Emails a new event causes, by the merchant's preferences.

    Only for money coming in (not payouts, refunds, disputes, reversals or balances): the merchant's
    "payment received" (on by default) or "payment failed" (opt-in) notice, and
    the buyer's receipt when the event carries a customer email.
    """
    if event.type in NO_RECEIPT_EMAIL_TYPES or not inbound.sends_payment_notices(event):
        return []
    return [email for email in (notices.payment_received(merchant, event, event_id),
                                notices.payment_failed(merchant, event, event_id),
                                notices.receipt(merchant, event, event_id)) if email is not None]
