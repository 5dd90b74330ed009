"""Every read and change the console makes, narrowed to what the signed-in key may see.

``Scope`` (shared with the JSON API, in ``reads``) is the one place the merchant restriction is applied:
every query passes through ``Scope.only``, so a merchant key asking for another merchant's
event, delivery or endpoint finds nothing, exactly as for an unknown id.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Select, func, or_, select, update
from sqlalchemy.orm import Session, load_only, selectinload

from payhook_shared import deadletters
from payhook_shared.callbacks import flutterwave, mpesa, paystack, sources
from payhook_shared.events import TEST_TYPE
from payhook_shared.priority import Priority
from payhook_shared.store import AuditEntry, Delivery, Endpoint, Event, JobState, Merchant
from payhook_shared.store.models import utcnow

from ..errors import NotFound
from ..reads import RARE_SUFFIX_DIGITS, Scope, phone_suffix, received_between

PAGE = 50
PENDING, SENDING, DONE, DEAD = (s.value for s in (JobState.PENDING, JobState.SENDING, JobState.DONE, JobState.DEAD))
#: Event types Payhook itself produces, offered as filter and rule choices alongside those seen lately.
KNOWN_EVENT_TYPES = frozenset(
    {mpesa.STK_PUSH, mpesa.C2B_VALIDATION, mpesa.C2B_CONFIRMATION, mpesa.B2C, mpesa.B2B, mpesa.REVERSAL,
     mpesa.TRANSACTION_STATUS, mpesa.ACCOUNT_BALANCE, flutterwave.CHARGE_COMPLETED, paystack.TRANSFER_SUCCESS,
     paystack.TRANSFER_FAILED, TEST_TYPE} | sources.PAYMENT_TYPES | sources.REFUND_TYPES | sources.DISPUTE_TYPES
)


def _page(session: Session, stmt: Select, id_column: Any, after: str | None, limit: int = PAGE,
          sort_key: Any = None):
    """Newest first, keyset-paginated by id; returns ``(rows, next_after)``.

    ``sort_key`` sorts in id order by an expression no index has (see ``events``).
    """
    if after:
        stmt = stmt.where(id_column < after)
    sort_key = id_column if sort_key is None else sort_key
    rows = list(session.scalars(stmt.order_by(sort_key.desc()).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (rows[-1].id if more else None)


# Overview --------------------------------------------------------------------------------------

def _hour_bucket(dialect: str, column: Any) -> Any:
    if dialect == "postgresql":
        # date_trunc, formatted here: to_char on every row of a day costs several times as much.
        return func.date_trunc("hour", column, "UTC")
    return func.strftime("%Y-%m-%d %H", column)


def _hour_key(bucket: str | dt.datetime) -> str:
    return bucket if isinstance(bucket, str) else bucket.astimezone(dt.timezone.utc).strftime("%Y-%m-%d %H")


def overview_statements(dialect: str, scope: Scope, now: dt.datetime) -> dict[str, Select]:
    """The overview's statements, each bounded by an index.

    Counts of events and finished deliveries cover the last 24 hours only
    (``received_at``, ``delivered_at`` and ``(state, dead_at)`` are indexed);
    the rest count what is waiting or dead, through ``(state, …)`` indexes,
    never every row. ``count(*)``, not ``count(id)``: the counts are then read from the indexes alone.
    """
    since = now - dt.timedelta(hours=24)
    events = scope.only(select(func.count()).select_from(Event), Event.merchant_id).where(Event.received_at >= since)
    deliveries = scope.only(select(func.count()).select_from(Delivery), Delivery.merchant_id)
    bucket = _hour_bucket(dialect, Event.received_at)
    return {
        "received": events,
        "delivered": deliveries.where(Delivery.delivered_at >= since),
        "dead": deliveries.where(Delivery.state == DEAD, Delivery.dead_at >= since),
        "dead_total": deliveries.where(Delivery.state == DEAD),
        "retrying": deliveries.where(Delivery.state.in_((PENDING, SENDING)), Delivery.attempts > 0),
        "waiting": scope.only(select(Delivery.priority, func.count()), Delivery.merchant_id)
        .where(Delivery.state.in_((PENDING, SENDING))).group_by(Delivery.priority),
        "troubled": scope.only(select(Endpoint), Endpoint.merchant_id)
        .where(or_(Endpoint.enabled.is_(False), Endpoint.consecutive_failures > 0, Endpoint.circuit_open_until > now))
        .order_by(Endpoint.id).limit(PAGE),
        "per_hour": scope.only(select(bucket, func.count()), Event.merchant_id)
        .where(Event.received_at >= since).group_by(bucket),
    }


def overview(session: Session, scope: Scope, now: dt.datetime | None = None) -> dict[str, Any]:
    """Counts for the last 24 hours, what is waiting by priority, troubled endpoints and events per hour."""
    now = now or utcnow()
    stmts = overview_statements(session.get_bind().dialect.name, scope, now)
    # The five counts in one statement of scalar subqueries: each is planned on its own index, and the
    # page waits for one round trip instead of five.
    received, delivered, dead, dead_total, retrying = (n or 0 for n in session.execute(select(*(
        stmts[name].scalar_subquery() for name in ("received", "delivered", "dead", "dead_total", "retrying")
    ))).one())
    waiting = {p.label: 0 for p in Priority}
    for priority, n in session.execute(stmts["waiting"]).all():
        waiting[Priority(priority).label] = n
    troubled = list(session.scalars(stmts["troubled"]))
    per_hour = {_hour_key(hour): n for hour, n in session.execute(stmts["per_hour"]).all()}
    since = now - dt.timedelta(hours=24)
    hours = [(since + dt.timedelta(hours=i + 1)).strftime("%Y-%m-%d %H") for i in range(24)]
    finished = delivered + dead
    return {
        "received": received, "delivered": delivered, "retrying": retrying, "dead": dead,
        "dead_total": dead_total,
        "success_rate": None if not finished else round(100 * delivered / finished, 1),
        "waiting": waiting, "troubled": troubled,
        "chart": [(hour, per_hour.get(hour, 0)) for hour in hours],
    }


# Events ----------------------------------------------------------------------------------------

def recent_types_statement(scope: Scope, now: dt.datetime) -> Select:
    """Event types received in the last 24 hours: bounded by the ``received_at`` index, never every event."""
    return scope.only(select(Event.type).distinct(), Event.merchant_id).where(
        Event.received_at >= now - dt.timedelta(hours=24))


def event_types(session: Session, scope: Scope, now: dt.datetime | None = None) -> list[str]:
    """Choices for a kind of event: those Payhook produces, and any other received in the last 24 hours."""
    return sorted(KNOWN_EVENT_TYPES | set(session.scalars(recent_types_statement(scope, now or utcnow()))))


def events_statement(scope: Scope, filters: dict[str, Any], dialect: str = "postgresql") -> Select:
    """Events matching ``filters`` (type, status, search, phone suffix, received range), unordered.

    A received range also bounds the ids (which start with the time they were minted), so the
    newest-first walk of an index starts at the range instead of at today.
    """
    stmt = scope.only(select(Event), Event.merchant_id)
    merchant = scope.merchant_filter(filters.get("merchant"))
    if merchant:
        stmt = stmt.where(Event.merchant_id == merchant)
    if filters.get("type"):
        stmt = stmt.where(Event.type == filters["type"])
    if filters.get("status"):
        stmt = stmt.where(Event.status == filters["status"])
    if filters.get("q"):
        q = filters["q"]
        stmt = stmt.where(or_(Event.receipt == q, Event.reference == q, Event.id == q))
    if filters.get("phone"):
        stmt = stmt.where(phone_suffix(dialect, filters["phone"]))
    stmt = received_between(stmt, filters.get("since"), filters.get("until"))
    return stmt


#: What the events list shows: the raw payload and the JSON columns stay in the database.
LIST_COLUMNS = (Event.id, Event.merchant_id, Event.type, Event.status, Event.amount_minor, Event.currency,
                Event.receipt, Event.phone, Event.received_at)


def events(session: Session, scope: Scope, filters: dict[str, Any], after: str | None):
    """A page of events matching ``filters``, newest first."""
    dialect = session.get_bind().dialect.name
    stmt = events_statement(scope, filters, dialect).options(load_only(*LIST_COLUMNS))
    sort_key = None
    if len(filters.get("phone") or "") >= RARE_SUFFIX_DIGITS and dialect == "postgresql":
        # Sorting by id || '' leaves PostgreSQL one plan: the few matches from the phone index, then
        # sorted. Free to walk the primary key newest first, it does so when its coarse estimate for a
        # suffix is high, and a rare suffix then reads most of the table (seconds at a million events).
        sort_key = Event.id.concat("")
    return _page(session, stmt, Event.id, after, sort_key=sort_key)


def event(session: Session, scope: Scope, event_id: str) -> Event:
    """One event with its deliveries and their endpoints.

    Raises:
      NotFound: for an unknown id or another merchant's event alike.
    """
    row = session.scalar(scope.only(select(Event), Event.merchant_id).where(Event.id == event_id)
                         .options(selectinload(Event.deliveries).selectinload(Delivery.endpoint)))
    if row is None:
        raise NotFound(f"no event {event_id}")
    return row


# Deliveries ------------------------------------------------------------------------------------

def deliveries_statement(scope: Scope, filters: dict[str, Any]) -> Select:
    """Deliveries, optionally by state, endpoint or event, unordered."""
    stmt = scope.only(select(Delivery), Delivery.merchant_id)
    for field, column in (("state", Delivery.state), ("endpoint", Delivery.endpoint_id),
                          ("event", Delivery.event_id)):
        if filters.get(field):
            stmt = stmt.where(column == filters[field])
    return stmt


def deliveries(session: Session, scope: Scope, filters: dict[str, Any], after: str | None):
    """A page of deliveries with their endpoints, newest first."""
    stmt = deliveries_statement(scope, filters).options(selectinload(Delivery.endpoint))
    return _page(session, stmt, Delivery.id, after)


def delivery(session: Session, scope: Scope, delivery_id: str) -> Delivery:
    """One delivery with its attempts, event and endpoint.

    Raises:
      NotFound: for an unknown id or another merchant's delivery alike.
    """
    row = session.scalar(
        scope.only(select(Delivery), Delivery.merchant_id).where(Delivery.id == delivery_id)
        .options(selectinload(Delivery.attempt_log), selectinload(Delivery.event), selectinload(Delivery.endpoint))
    )
    if row is None:
        raise NotFound(f"no delivery {delivery_id}")
    return row


def retry_now(session: Session, scope: Scope, delivery_id: str, now: dt.datetime | None = None) -> bool:
    """Send a delivery again now: a dead letter gets a fresh schedule, a waiting retry is brought forward.

    Only rows change; the delivery-worker's sweeper enqueues them. Returns whether anything changed.
    """
    now = now or utcnow()
    row = delivery(session, scope, delivery_id)
    if row.state == DEAD:
        return deadletters.retry(session, [row.id], now) == 1
    if row.state == PENDING:
        return session.execute(
            update(Delivery).where(Delivery.id == row.id, Delivery.state == PENDING).values(next_attempt_at=now)
            .execution_options(synchronize_session=False)
        ).rowcount == 1
    return False


# Dead letters ----------------------------------------------------------------------------------

def dead_filter(scope: Scope, filters: dict[str, Any]) -> deadletters.Filter:
    """The dead-letter filter asked for, always inside the scope."""
    return deadletters.Filter(merchant_id=scope.merchant_filter(filters.get("merchant")),
                              endpoint_id=filters.get("endpoint") or None,
                              category=filters.get("category") or None,
                              since=filters.get("since"), until=filters.get("until"))


def dead_letters(session: Session, where: deadletters.Filter, after: str | None):
    """A page of dead letters matching ``where``, with their endpoints."""
    rows = deadletters.list_dead(session, where, PAGE + 1, after)
    more = len(rows) > PAGE
    rows = rows[:PAGE]
    return rows, (rows[-1].id if more else None)


def retry_selected(session: Session, scope: Scope, delivery_ids: list[str]) -> int:
    """Retry the chosen dead letters that are inside the scope; returns how many."""
    if not delivery_ids:
        return 0
    ids = list(session.scalars(scope.only(select(Delivery.id), Delivery.merchant_id)
                               .where(Delivery.id.in_(delivery_ids), Delivery.state == DEAD)))
    return deadletters.retry(session, ids) if ids else 0


# Endpoints and merchants -----------------------------------------------------------------------

def endpoints(session: Session, scope: Scope) -> list[Endpoint]:
    """Every endpoint in scope, with its merchant."""
    return list(session.scalars(scope.only(select(Endpoint), Endpoint.merchant_id)
                                .options(selectinload(Endpoint.merchant)).order_by(Endpoint.id)))


def endpoint(session: Session, scope: Scope, endpoint_id: str, for_update: bool = False) -> Endpoint:
    """One endpoint in scope.

    Raises:
      NotFound: for an unknown id or another merchant's endpoint alike.
    """
    stmt = scope.only(select(Endpoint), Endpoint.merchant_id).where(Endpoint.id == endpoint_id)
    row = session.scalar(stmt.with_for_update() if for_update else stmt)
    if row is None:
        raise NotFound(f"no endpoint {endpoint_id}")
    return row


def merchants(session: Session, scope: Scope) -> list[Merchant]:
    """Every merchant in scope."""
    return list(session.scalars(scope.only(select(Merchant), Merchant.id).order_by(Merchant.name, Merchant.id)))


def merchant(session: Session, scope: Scope, merchant_id: str) -> Merchant:
    """One merchant in scope.

    Raises:
      NotFound: for an unknown id or another merchant alike.
    """
    row = session.scalar(scope.only(select(Merchant), Merchant.id).where(Merchant.id == merchant_id))
    if row is None:
        raise NotFound(f"no merchant {merchant_id}")
    return row


# Audit log -------------------------------------------------------------------------------------

def audit_log(session: Session, scope: Scope, after: str | None):
    """A page of audit entries, newest first: every entry for an admin, a merchant's own keys' otherwise."""
    stmt = scope.only(select(AuditEntry), AuditEntry.merchant_id)
    if after:
        stmt = stmt.where(AuditEntry.id < int(after))
    rows = list(session.scalars(stmt.order_by(AuditEntry.id.desc()).limit(PAGE + 1)))
    more = len(rows) > PAGE
    rows = rows[:PAGE]
    return rows, (str(rows[-1].id) if more else None)
