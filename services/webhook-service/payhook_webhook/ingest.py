"""Recording an incoming event: one atomic write, then the messages.

The event, one delivery per interested endpoint and any notification emails
are written together or not at all — on PostgreSQL as one statement, so the
whole write is one round trip; only after it commits are the Redis messages
sent. If Redis refuses, the callback is still acknowledged — it is
recorded — and the sweeper sends the messages once Redis is back.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from typing import Any

import dramatiq
from sqlalchemy import Integer, String, bindparam, cast, insert, literal_column, select, union_all
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
from payhook_shared.store import Delivery, Email, Event, Merchant, Store
from payhook_shared.store.compiled import Compiled
from payhook_shared.store.models import utcnow

from . import metrics
from .errors import ProfileChanged
from .merchants import Profile, Route

log = logging.getLogger(__name__)

# Types delivered only to endpoints that list them: a C2B validation is not a
# payment, and an endpoint taking "every type" expects payments.
OPT_IN_TYPES = frozenset({mpesa.C2B_VALIDATION})
# Types that are not money received, so they send no "payment received" email.
NO_RECEIPT_EMAIL_TYPES = mpesa.NOT_RECEIVED_TYPES | {TEST_TYPE}
_EVENT_FIELDS = tuple(f.name for f in dataclasses.fields(NormalisedEvent))


def _wants(endpoint: Route, event_type: str) -> bool:
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


@dataclasses.dataclass
class _Rows:
    """What one new event writes: its row, its deliveries' and its emails' rows, and their messages."""

    event: dict[str, Any]
    deliveries: list[tuple[dict[str, Any], dramatiq.Message]]
    emails: list[tuple[dict[str, Any], dramatiq.Message]]


def record(store: Store, broker: RedisBroker, merchant: Profile, event: NormalisedEvent,
           raw_body: bytes, priority: Priority) -> Recorded:
    """Durably record ``event`` for ``merchant`` and queue its deliveries and emails.

    A repeat of an already-recorded event (same dedupe key) changes nothing and
    reports ``duplicate=True``. Raises ``ProfileChanged``, having written nothing,
    when ``merchant`` is no longer current.
    """
    rows = _plan(merchant, event, raw_body, priority)
    event_id = rows.event["id"]
    if store.dialect == "postgresql":
        inserted, email_ids = _write_statement(store, rows, merchant.version)
    else:
        inserted, email_ids = _write_transaction(store, rows)
    if not inserted:
        with store.read() as session:
            return Recorded(_existing_event_id(session, merchant.id, event.dedupe_key), duplicate=True)

    messages = [m for _, m in rows.deliveries] + [m for row, m in rows.emails if row["id"] in email_ids]
    recorded = Recorded(event_id, duplicate=False, deliveries=len(rows.deliveries), emails=len(email_ids))
    metrics.count_event(event.type, Priority.parse(priority).label)
    with bind(event_id=event_id, merchant_id=merchant.id):
        _send(broker, messages)
        log.info("recorded %s %s: %d deliveries, %d emails",
                 event.type, event.status, recorded.deliveries, recorded.emails)
    return recorded


def _plan(merchant: Profile, event: NormalisedEvent, raw_body: bytes, priority: Priority) -> _Rows:
    now = utcnow()
    event_id = ids.new_id("evt")
    values = {name: getattr(event, name) for name in _EVENT_FIELDS}
    values.update(id=event_id, merchant_id=merchant.id, priority=int(priority), received_at=now,
                  raw_payload=raw_body.decode("utf-8"))
    deliveries = []
    for endpoint in merchant.endpoints:
        if not _wants(endpoint, event.type):
            continue
        delivery_id = ids.new_id("dlv")
        message = jobs.plan(DeliverWebhook(delivery_id=delivery_id, event_id=event_id,
                                           merchant_id=merchant.id, priority=priority))
        deliveries.append((jobs.new_row(message, now, id=delivery_id, event_id=event_id, endpoint_id=endpoint.id,
                                        merchant_id=merchant.id, priority=int(priority), round_start=0), message))
    emails = [notices.planned(email, now) for email in _notifications(merchant, event, event_id)]
    return _Rows(values, deliveries, emails)


def _write_statement(store: Store, rows: _Rows, version: int) -> tuple[bool, set[str]]:
    """PostgreSQL: the event, its deliveries and its emails in one statement, so one round trip.

    The deliveries and emails select from the event insert's RETURNING, so a
    duplicate event (nothing returned) inserts none of them. The event inserts
    only while the merchant's ``config_version`` is still ``version``, the one
    the rows were planned from; otherwise nothing is written and ``ProfileChanged``
    says to read the merchant again.
    """
    statement = _one_statement(len(rows.deliveries), len(rows.emails), store.engine.dialect)
    values: dict[str, Any] = {"profile_version": version}
    for prefix, table, row in (("e", Event.__table__, rows.event),
                               *((f"d{i}", Delivery.__table__, row) for i, (row, _) in enumerate(rows.deliveries)),
                               *((f"m{i}", Email.__table__, row) for i, (row, _) in enumerate(rows.emails))):
        values.update((f"{prefix}_{column.key}", row.get(column.key)) for column in table.columns)
    with store.driver() as conn:
        returned = conn.execute(statement.sql, statement.params(values)).fetchall()
    if not any(kind == "version" and value == str(version) for kind, value in returned):
        raise ProfileChanged(rows.event["merchant_id"])
    return (any(kind == "event" for kind, _ in returned),
            {value for kind, value in returned if kind == "email"})


@functools.cache
def _one_statement(deliveries: int, emails: int, dialect: Any) -> Compiled:
    """The one-statement write for an event with this many deliveries and emails, compiled once."""
    def params(prefix: str, table: Any) -> dict[str, Any]:
        return {c.key: bindparam(f"{prefix}_{c.key}", type_=c.type) for c in table.columns}

    def rows_from(gate: Any, prefix: str, table: Any, count: int) -> Any:
        selects = [select(*params(f"{prefix}{i}", table).values()).select_from(gate) for i in range(count)]
        return union_all(*selects) if count > 1 else selects[0]

    merchant_id = bindparam("e_merchant_id", type_=Merchant.__table__.c.id.type)
    current = (select(Merchant.config_version).where(Merchant.id == merchant_id)
               .where(Merchant.config_version == bindparam("profile_version", type_=Integer)))
    event_values = params("e", Event.__table__)
    new_event = (pg_insert(Event)
                 .from_select(list(event_values), select(*event_values.values()).where(current.exists()))
                 .on_conflict_do_nothing(index_elements=["merchant_id", "dedupe_key"])
                 .returning(Event.id).cte("new_event"))
    results = [select(literal_column("'event'"), new_event.c.id),
               select(literal_column("'version'"), cast(Merchant.config_version, String))
               .where(Merchant.id == merchant_id)]
    ctes = []
    if deliveries:
        ctes.append(pg_insert(Delivery).from_select([c.key for c in Delivery.__table__.columns],
                                                    rows_from(new_event, "d", Delivery.__table__, deliveries))
                    .returning(Delivery.id).cte("new_deliveries"))
    if emails:
        new_emails = (pg_insert(Email).from_select([c.key for c in Email.__table__.columns],
                                                   rows_from(new_event, "m", Email.__table__, emails))
                      .on_conflict_do_nothing(index_elements=["dedupe_key"])
                      .returning(Email.id).cte("new_emails"))
        results.append(select(literal_column("'email'"), new_emails.c.id))
    statement = union_all(*results)
    for cte in ctes:
        statement = statement.add_cte(cte)
    return Compiled(statement, dialect)


def _write_transaction(store: Store, rows: _Rows) -> tuple[bool, set[str]]:
    """SQLite (in process, no round trips to save): the same rows in one transaction."""
    with store.write() as session:
        inserted = session.execute(
            sqlite_insert(Event).values(**rows.event)
            .on_conflict_do_nothing(index_elements=["merchant_id", "dedupe_key"]).returning(Event.id)
        ).scalar_one_or_none()
        if inserted is None:
            return False, set()
        if rows.deliveries:
            session.execute(insert(Delivery), [row for row, _ in rows.deliveries])
        email_ids = set()
        for row, _ in rows.emails:
            stmt = (sqlite_insert(Email).values(**row).on_conflict_do_nothing(index_elements=["dedupe_key"])
                    .returning(Email.id))
            if session.execute(stmt).scalar_one_or_none() is not None:
                email_ids.add(row["id"])
    return True, email_ids


def _existing_event_id(session: Session, merchant_id: str, dedupe_key: str) -> str:
    return session.execute(
        select(Event.id).where(Event.merchant_id == merchant_id, Event.dedupe_key == dedupe_key)
    ).scalar_one()


def _send(broker: RedisBroker, messages: list[dramatiq.Message]) -> None:
    for message in messages:
        try:
            broker.enqueue(message)
        except Exception:
            # Recorded already: the sweeper enqueues it once Redis answers again.
            log.warning("could not enqueue %s; the sweeper will", message.queue_name, exc_info=True)
            return


def _notifications(merchant: Profile, event: NormalisedEvent, event_id: str) -> list[Email]:
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
