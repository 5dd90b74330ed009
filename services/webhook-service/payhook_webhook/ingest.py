"""Recording incoming events: one atomic write, then the messages — many requests to a write.

An event, one delivery per interested endpoint and any notification emails are
written together or not at all; only after they commit are the Redis messages
sent, and only then is the caller answered. If Redis refuses, the callback is
still acknowledged — it is recorded — and the sweeper sends the messages once
Redis is back.

Requests arriving together share one write (group commit, as databases do with
their own log): while one request writes, the others queue; the next one to
lead takes the whole queue into one statement (PostgreSQL) or one transaction
(SQLite) — one round trip, one commit, one fsync — and one Redis pipeline, so
the database's cost per event falls as batches grow (docs/performance.md has the
figures). A batch the database refuses for one of its
events (a conflict or a bad value) is written again event by event, so one bad
event never fails the others. The same pipeline publishes each new event's id
to the merchant's live streams (``stream.py``), after the commit, so a stream
never shows an event the store could still lose.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import threading
from collections.abc import Sequence
from typing import Any

import dramatiq
from sqlalchemy import Update, insert, select, update
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError
from sqlalchemy.orm import Session

from payhook_shared import ids, jobs, notices
from payhook_shared.provider_keys import provider_key
from payhook_shared.broker import RedisBroker
from payhook_shared.callbacks import mpesa, sources
from payhook_shared.events import SUCCEEDED, TEST_TYPE, NormalisedEvent
from payhook_shared.logs import bind
from payhook_shared.messages import MAX_DELIVERIES, DeliverWebhook
from payhook_shared.priority import DELIVERY, Priority, queue_name
from payhook_shared.store import (
    Delivery, Email, Event, IntentState, PaymentIntent, StatusCheck, StatusCheckState, Store,
)
from payhook_shared.store.models import utcnow

from . import metrics, stream
from .errors import ProfileChanged
from .merchants import Profile, Route

log = logging.getLogger(__name__)

# Types delivered only to endpoints that list them: a C2B validation is not a
# payment, and an endpoint taking "every type" expects payments.
OPT_IN_TYPES = frozenset({mpesa.C2B_VALIDATION})
# Types that are not money received, so they send no "payment received" email.
NO_RECEIPT_EMAIL_TYPES = mpesa.NOT_RECEIVED_TYPES | {TEST_TYPE}
# At most this many events share one write; more wait for the next.
MAX_BATCH = 100
RECORD_EVENTS = "SELECT kind, row_id, version FROM payhook_record_events(%s, %s, %s)"
# The same call, with what some events bring in the same statement (so the same transaction and round trip):
# the payment intents the batch's new STK Push results settle, found by CheckoutRequestID, and the status
# checks its new B2C, B2B and reversal QueueTimeOuts start (``resolve.py``).
_RECORDED = "recorded AS MATERIALIZED (SELECT kind, row_id, version FROM payhook_record_events(%s, %s, %s))"
_SETTLED = """settled AS (
    UPDATE payment_intents AS p
    SET state = s.state, result_code = s.result_code, event_id = s.event_id, resolved_at = s.resolved_at
    FROM json_to_recordset(%s::json) AS s(merchant_id text, checkout_request_id text, state text,
                                          result_code text, event_id text, resolved_at timestamptz)
    WHERE p.checkout_request_id = s.checkout_request_id AND p.merchant_id = s.merchant_id
      AND p.state IN ('pending', 'unknown')
      AND s.event_id IN (SELECT row_id FROM recorded WHERE kind = 'event')
)"""
_FOLLOWED = """followed AS (
    INSERT INTO status_checks
    SELECT c.* FROM json_populate_recordset(NULL::status_checks, %s::json) AS c
    WHERE c.event_id IN (SELECT row_id FROM recorded WHERE kind = 'event')
    ON CONFLICT (event_id) DO NOTHING
)"""
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
    """What one new event writes: its row, its deliveries' rows, and its emails' rows with their messages.

    The deliveries' messages are planned for the whole batch (``_carry``), a few deliveries to a message.
    """

    event: dict[str, Any]
    deliveries: list[dict[str, Any]]
    emails: list[tuple[dict[str, Any], dramatiq.Message]]
    status_check: dict[str, Any] | None = None


@dataclasses.dataclass
class _Write:
    """One event's rows on their way into a batch, and what the batch made of them."""

    rows: _Rows
    version: int
    inserted: bool = False
    stale: bool = False
    email_ids: set[str] = dataclasses.field(default_factory=set)
    error: BaseException | None = None

    def email_messages(self) -> list[dramatiq.Message]:
        """The messages of the emails that were new, to send once written."""
        return [m for row, m in self.rows.emails if row["id"] in self.email_ids]


def record(store: Store, broker: RedisBroker, merchant: Profile, event: NormalisedEvent,
           raw_body: bytes, priority: Priority) -> Recorded:
    """Durably record ``event`` for ``merchant`` and queue its deliveries and emails, in the caller's thread.

    A repeat of an already-recorded event (same dedupe key) changes nothing and
    reports ``duplicate=True``. Raises ``ProfileChanged``, having written nothing,
    when ``merchant`` is no longer current.
    """
    write = _Write(_plan(merchant, event, raw_body, priority), merchant.version)
    _write_and_send(store, broker, [write])
    return _outcome(store, merchant, event, priority, write)


def record_many(store: Store, broker: RedisBroker, merchant: Profile, events: Sequence[tuple[NormalisedEvent, bytes]],
                priority: Priority) -> list[Recorded]:
    """``record`` for each ``(event, raw body)``, written ``MAX_BATCH`` at a time rather than one by one."""
    writes = [_Write(_plan(merchant, event, raw_body, priority), merchant.version) for event, raw_body in events]
    for start in range(0, len(writes), MAX_BATCH):
        _write_and_send(store, broker, writes[start:start + MAX_BATCH])
    return [_outcome(store, merchant, event, priority, write) for (event, _), write in zip(events, writes)]


class Recorder:
    """``record`` for the requests of one process (greenlets or threads), their concurrent events written together.

    The first request to find no write in progress leads: it writes everything
    queued so far, itself included, wakes the others with their outcomes, and
    hands the lead to the first request that queued meanwhile. No thread of its
    own, so nothing to start after a fork or to stop at shutdown.
    """

    def __init__(self, store: Store, broker: RedisBroker, max_batch: int = MAX_BATCH):
        self.store = store
        self.broker = broker
        self.max_batch = max_batch
        self._lock = threading.Lock()
        self._queue: list[_Waiting] = []
        self._leading = False

    def record(self, merchant: Profile, event: NormalisedEvent, raw_body: bytes, priority: Priority) -> Recorded:
        """As ``record``: returns once this event is written and its messages sent."""
        waiting = _Waiting(_Write(_plan(merchant, event, raw_body, priority), merchant.version))
        with self._lock:
            self._queue.append(waiting)
            follow, self._leading = self._leading, True
        if not follow or waiting.wait():
            self._lead()
        return _outcome(self.store, merchant, event, priority, waiting.write)

    def _lead(self) -> None:
        with self._lock:
            batch, self._queue = self._queue[:self.max_batch], self._queue[self.max_batch:]
        try:
            _write_and_send(self.store, self.broker, [w.write for w in batch])
            metrics.observe_batch(len(batch))
        except Exception as exc:  # a bug, not the database: still answer every request, with the error
            for waiting in batch:
                waiting.write.error = exc
        finally:
            with self._lock:
                successor = self._queue[0] if self._queue else None
                self._leading = successor is not None
            for waiting in batch:
                waiting.done()
            if successor is not None:
                successor.lead()


class _Waiting:
    """A queued request's write and the lock it sleeps on until it is done or asked to lead."""

    __slots__ = ("write", "_wake", "_leads")

    def __init__(self, write: _Write):
        self.write = write
        self._wake = threading.Lock()
        self._wake.acquire()
        self._leads = False

    def wait(self) -> bool:
        """Sleep until woken; ``True`` if this request is to lead the next write."""
        self._wake.acquire()
        return self._leads

    def done(self) -> None:
        """Wake the request: its write is done (held since ``__init__`` or since its ``wait`` to lead)."""
        self._wake.release()

    def lead(self) -> None:
        """Wake the request to lead the next write."""
        self._leads = True
        self._wake.release()


def _outcome(store: Store, merchant: Profile, event: NormalisedEvent, priority: Priority, write: _Write) -> Recorded:
    """What became of ``write``, as ``record`` reports it, logged in the caller's context."""
    if write.error is not None:
        raise write.error
    if write.stale:
        raise ProfileChanged(merchant.id)
    if not write.inserted:
        with store.read() as session:
            return Recorded(_existing_event_id(session, merchant.id, event.dedupe_key), duplicate=True)
    event_id = write.rows.event["id"]
    recorded = Recorded(event_id, duplicate=False, deliveries=len(write.rows.deliveries),
                        emails=len(write.email_ids))
    metrics.count_event(event.type, Priority.parse(priority).label)
    with bind(event_id=event_id, merchant_id=merchant.id):
        log.info("recorded %s %s: %d deliveries, %d emails",
                 event.type, event.status, recorded.deliveries, recorded.emails)
    return recorded


def _plan(merchant: Profile, event: NormalisedEvent, raw_body: bytes, priority: Priority) -> _Rows:
    now = utcnow()
    event_id = ids.new_id("evt")
    values = {name: getattr(event, name) for name in _EVENT_FIELDS}
    values.update(id=event_id, merchant_id=merchant.id, priority=int(priority), received_at=now,
                  raw_payload=raw_body.decode("utf-8"), provider_key=provider_key(event.provider_ids))
    deliveries = []
    for endpoint in merchant.endpoints:
        if not _wants(endpoint, event.type):
            continue
        deliveries.append(jobs.new_row(None, now, id=ids.new_id("dlv"), event_id=event_id, endpoint_id=endpoint.id,
                                       merchant_id=merchant.id, priority=int(priority), round_start=0))
    emails = [notices.planned(email, now) for email in _notifications(merchant, event, event_id)]
    return _Rows(values, deliveries, emails, _status_check(values))


def _write_and_send(store: Store, broker: RedisBroker, writes: list[_Write]) -> None:
    """Write ``writes`` together, then send the messages of those newly written."""
    write = _write_postgresql if store.dialect == "postgresql" else _write_sqlite
    carriers = _carry(writes)
    try:
        write(store, writes)
    except DBAPIError as exc:
        if len(writes) == 1 or not _one_events_fault(exc):
            for w in writes:
                w.error = exc
            return
        log.warning("a batch of %d events was refused (%s); writing them one by one", len(writes), type(exc).__name__)
        for w in writes:
            try:
                write(store, [w])
            except DBAPIError as one:
                w.error = one
    written = {row["id"] for w in writes if w.inserted for row in w.rows.deliveries}
    deliveries = [jobs.plan(DeliverWebhook(delivery_ids=ids_, priority=priority), redis_id)
                  for redis_id, priority, rows in carriers
                  if (ids_ := tuple(row["id"] for row in rows if row["id"] in written))]
    _send(broker, deliveries + [m for w in writes if w.inserted for m in w.email_messages()],
          stream.notices(w.rows.event for w in writes if w.inserted))


def _carry(writes: Sequence[_Write]) -> list[tuple[str, Priority, list[dict[str, Any]]]]:
    """Name on each new delivery the message that will carry it: one per ``MAX_DELIVERIES`` of one priority.

    Returns each message's Redis id, priority and rows; the message itself is made once the rows are
    written, naming only those that were.
    """
    by_priority: dict[int, list[dict[str, Any]]] = {}
    for w in writes:
        for row in w.rows.deliveries:
            by_priority.setdefault(row["priority"], []).append(row)
    carriers = []
    for level, rows in by_priority.items():
        priority = Priority(level)
        queue = queue_name(DELIVERY, priority)
        for start in range(0, len(rows), MAX_DELIVERIES):
            redis_id, chunk = jobs.new_redis_id(), rows[start:start + MAX_DELIVERIES]
            for row in chunk:
                row.update(queue_name=queue, message_id=redis_id)
            carriers.append((redis_id, priority, chunk))
    return carriers


def _one_events_fault(exc: DBAPIError) -> bool:
    """Whether a refused batch may be one event's fault (a bad value, a conflict), not the database's."""
    # SQLSTATE class 40: a deadlock or serialization failure between concurrent batches.
    return (isinstance(exc, (DataError, IntegrityError))
            or str(getattr(exc.orig, "sqlstate", "") or "").startswith("40")) and not exc.connection_invalidated


def _write_postgresql(store: Store, writes: Sequence[_Write]) -> None:
    """PostgreSQL: every event, delivery and email of the batch in one call of ``payhook_record_events``.

    The function (migration 0010) takes each table's rows as one JSON array:
    three parameters whatever the batch, so psycopg converts the call once and
    encoding the rows is one pass of the C JSON encoder.
    """
    events = json.dumps([{**w.rows.event, "profile_version": w.version} for w in writes], default=_json_value)
    deliveries = json.dumps([row for w in writes for row in w.rows.deliveries], default=_json_value)
    emails = json.dumps([row for w in writes for row, _ in w.rows.emails], default=_json_value)
    settling = [row for w in writes if (row := _settlement(w.rows.event)) is not None]
    following = [w.rows.status_check for w in writes if w.rows.status_check is not None]
    statement, params = RECORD_EVENTS, [events, deliveries, emails]
    if settling or following:
        parts = [_RECORDED]
        for part, rows in ((_SETTLED, settling), (_FOLLOWED, following)):
            if rows:
                parts.append(part)
                params.append(json.dumps(rows, default=_json_value))
        statement = f"WITH {', '.join(parts)} SELECT kind, row_id, version FROM recorded"
    with store.driver() as conn:
        returned = conn.execute(statement, params).fetchall()
    new_events = {row_id for kind, row_id, _ in returned if kind == "event"}
    new_emails = {row_id for kind, row_id, _ in returned if kind == "email"}
    versions = {row_id: version for kind, row_id, version in returned if kind == "version"}
    for w in writes:
        w.stale = versions.get(w.rows.event["merchant_id"]) != w.version
        w.inserted = w.rows.event["id"] in new_events
        w.email_ids = {row["id"] for row, _ in w.rows.emails if row["id"] in new_emails}


def _json_value(value: Any) -> str:
    """A timestamp as ISO 8601 with its offset (as ``UTCDateTime`` binds it, naive ones refused)."""
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _write_sqlite(store: Store, writes: Sequence[_Write]) -> None:
    """SQLite (in process, no round trips to save): the batch's rows in one transaction, so one commit."""
    for w in writes:  # from a failed try at a larger batch
        w.inserted, w.email_ids = False, set()
    with store.write() as session:
        for w in writes:
            rows = w.rows
            inserted = session.execute(
                sqlite_insert(Event).values(**rows.event)
                .on_conflict_do_nothing(index_elements=["merchant_id", "dedupe_key"]).returning(Event.id)
            ).scalar_one_or_none()
            if inserted is None:
                continue
            if rows.deliveries:
                session.execute(insert(Delivery), rows.deliveries)
            settle = _settlement(rows.event)
            if settle is not None:
                session.execute(settle_intent(settle))
            if rows.status_check is not None:
                session.execute(insert(StatusCheck).values(**rows.status_check))
            for row, _ in rows.emails:
                stmt = (sqlite_insert(Email).values(**row).on_conflict_do_nothing(index_elements=["dedupe_key"])
                        .returning(Email.id))
                if session.execute(stmt).scalar_one_or_none() is not None:
                    w.email_ids.add(row["id"])
            w.inserted = True


def _settlement(event: dict[str, Any]) -> dict[str, Any] | None:
    """What an STK Push result settles: its payment intent (by CheckoutRequestID), or ``None`` for other events."""
    if event["type"] != mpesa.STK_PUSH or not event.get("reference"):
        return None
    return {"merchant_id": event["merchant_id"], "checkout_request_id": event["reference"],
            "state": (IntentState.COMPLETED if event["status"] == SUCCEEDED else IntentState.FAILED).value,
            "result_code": event["result_code"], "event_id": event["id"], "resolved_at": event["received_at"]}


def _status_check(event: dict[str, Any]) -> dict[str, Any] | None:
    """The Transaction Status follow-up a new B2C, B2B or reversal QueueTimeOut starts, or ``None`` for other events.

    Every column is given (PostgreSQL builds the row from JSON, without the model's defaults); the reconciler
    first asks ``RECONCILE_AFTER`` after ``created_at`` (``next_check_at`` unset).
    """
    if not mpesa.is_followed_timeout(event["type"], event["dedupe_key"]):
        return None
    ids_ = event["provider_ids"]
    return {"id": ids.new_id("stc"), "merchant_id": event["merchant_id"], "event_id": event["id"],
            "event_type": event["type"], "originator_conversation_id": ids_["OriginatorConversationID"],
            "conversation_id": ids_.get("ConversationID"), "state": StatusCheckState.PENDING.value,
            "created_at": event["received_at"], "next_check_at": None, "checks": 0, "last_checked_at": None,
            "queries": 0, "query_originator_id": None, "query_conversation_id": None, "status": None,
            "resolution_event_id": None, "resolved_at": None}


def settle_intent(settlement: dict[str, Any]) -> Update:
    """The UPDATE that settles a pending (or unknown) payment intent as ``settlement`` (``_settlement``) says."""
    return (update(PaymentIntent)
            .where(PaymentIntent.merchant_id == settlement["merchant_id"],
                   PaymentIntent.checkout_request_id == settlement["checkout_request_id"],
                   PaymentIntent.state.in_((IntentState.PENDING.value, IntentState.UNKNOWN.value)))
            .values(state=settlement["state"], result_code=settlement["result_code"],
                    event_id=settlement["event_id"], resolved_at=settlement["resolved_at"]))


def _existing_event_id(session: Session, merchant_id: str, dedupe_key: str) -> str:
    return session.execute(
        select(Event.id).where(Event.merchant_id == merchant_id, Event.dedupe_key == dedupe_key)
    ).scalar_one()


def _send(broker: RedisBroker, messages: list[dramatiq.Message], notices_: list[tuple[str, str]]) -> None:
    """Enqueue the batch's messages and tell the live streams (``GET /v1/stream``) of its new events, in one pipeline."""
    if not messages and not notices_:
        return
    try:
        broker.enqueue_many(messages, notices_)
    except Exception:
        # Recorded already: the sweeper enqueues them once Redis answers again. A lost notice costs
        # nothing either: the streams lost their Redis connection too, so their clients resume from the store.
        log.warning("could not enqueue %d message(s); the sweeper will", len(messages), exc_info=True)


def _notifications(merchant: Profile, event: NormalisedEvent, event_id: str) -> list[Email]:
    """Emails a new event causes, by the merchant's preferences.

    Only for money coming in (not payouts, refunds, disputes, reversals or balances): the merchant's
    "payment received" (on by default) or "payment failed" (opt-in) notice, and
    the buyer's receipt when the event carries a customer email.
    """
    if event.type in NO_RECEIPT_EMAIL_TYPES or not sources.sends_payment_notices(event):
        return []
    return [email for email in (notices.payment_received(merchant, event, event_id),
                                notices.payment_failed(merchant, event, event_id),
                                notices.receipt(merchant, event, event_id)) if email is not None]
