"""Every read and change the console makes, narrowed to what the signed-in key may see.

``Scope`` is the one place the merchant restriction is applied: every query
passes through ``Scope.only``, so a merchant key asking for another merchant's
event, delivery or endpoint finds nothing, exactly as for an unknown id.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from sqlalchemy import Select, func, or_, select, update
from sqlalchemy.orm import Session, selectinload

from payhook_shared import deadletters
from payhook_shared.priority import Priority
from payhook_shared.store import AuditEntry, Delivery, Endpoint, Event, JobState, Merchant
from payhook_shared.store.models import utcnow

from ..auth import Principal
from ..errors import NotFound

PAGE = 50
PENDING, SENDING, DONE, DEAD = (s.value for s in JobState)


@dataclasses.dataclass(frozen=True)
class Scope:
    """What a principal may see: every merchant (admin) or one."""

    merchant_id: str | None

    @classmethod
    def of(cls, principal: Principal) -> "Scope":
        """The scope of ``principal``."""
        return cls(principal.merchant_id)

    @property
    def is_admin(self) -> bool:
        """Whether this scope covers every merchant."""
        return self.merchant_id is None

    def only(self, stmt: Select, column: Any) -> Select:
        """``stmt`` restricted to this scope's merchant through ``column``."""
        return stmt if self.merchant_id is None else stmt.where(column == self.merchant_id)

    def merchant_filter(self, requested: str | None) -> str | None:
        """The merchant a filter may name: anything for an admin, always its own for a merchant."""
        return requested or None if self.is_admin else self.merchant_id


def _page(session: Session, stmt: Select, id_column: Any, after: str | None, limit: int = PAGE):
    """Newest first, keyset-paginated by id; returns ``(rows, next_after)``."""
    if after:
        stmt = stmt.where(id_column < after)
    rows = list(session.scalars(stmt.order_by(id_column.desc()).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (rows[-1].id if more else None)


# Overview --------------------------------------------------------------------------------------

def _hour_bucket(session: Session, column: Any) -> Any:
    if session.get_bind().dialect.name == "postgresql":
        return func.to_char(func.timezone("UTC", column), "YYYY-MM-DD HH24")
    return func.strftime("%Y-%m-%d %H", column)


def overview(session: Session, scope: Scope, now: dt.datetime | None = None) -> dict[str, Any]:
    """Counts for the last 24 hours, what is waiting by priority, troubled endpoints and events per hour."""
    now = now or utcnow()
    since = now - dt.timedelta(hours=24)

    def count(stmt: Select) -> int:
        return session.scalar(stmt) or 0

    received = count(scope.only(select(func.count(Event.id)).where(Event.received_at >= since), Event.merchant_id))
    deliveries = scope.only(select(func.count(Delivery.id)), Delivery.merchant_id)
    delivered = count(deliveries.where(Delivery.delivered_at >= since))
    dead = count(deliveries.where(Delivery.state == DEAD, Delivery.dead_at >= since))
    dead_total = count(deliveries.where(Delivery.state == DEAD))
    retrying = count(deliveries.where(Delivery.state.in_((PENDING, SENDING)), Delivery.attempts > 0))
    waiting_rows = session.execute(
        scope.only(select(Delivery.priority, func.count(Delivery.id)), Delivery.merchant_id)
        .where(Delivery.state.in_((PENDING, SENDING))).group_by(Delivery.priority)
    ).all()
    waiting = {p.label: 0 for p in Priority}
    for priority, n in waiting_rows:
        waiting[Priority(priority).label] = n
    troubled = list(session.scalars(
        scope.only(select(Endpoint), Endpoint.merchant_id)
        .where(or_(Endpoint.enabled.is_(False), Endpoint.consecutive_failures > 0,
                   Endpoint.circuit_open_until > now))
        .order_by(Endpoint.id).limit(PAGE)
    ))
    bucket = _hour_bucket(session, Event.received_at)
    per_hour = dict(session.execute(
        scope.only(select(bucket, func.count(Event.id)), Event.merchant_id)
        .where(Event.received_at >= since).group_by(bucket)
    ).all())
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

def event_types(session: Session, scope: Scope) -> list[str]:
    """The event types present, for the filter's choices."""
    return list(session.scalars(scope.only(select(Event.type).distinct(), Event.merchant_id).order_by(Event.type)))


def events(session: Session, scope: Scope, filters: dict[str, Any], after: str | None):
    """A page of events matching ``filters`` (type, status, search, phone suffix, received range)."""
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
        stmt = stmt.where(Event.phone.like(f"%{filters['phone']}"))
    if filters.get("since"):
        stmt = stmt.where(Event.received_at >= filters["since"])
    if filters.get("until"):
        stmt = stmt.where(Event.received_at < filters["until"])
    return _page(session, stmt, Event.id, after)


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

def deliveries(session: Session, scope: Scope, filters: dict[str, Any], after: str | None):
    """A page of deliveries, optionally by state, endpoint or event."""
    stmt = scope.only(select(Delivery), Delivery.merchant_id).options(selectinload(Delivery.endpoint))
    for field, column in (("state", Delivery.state), ("endpoint", Delivery.endpoint_id),
                          ("event", Delivery.event_id)):
        if filters.get(field):
            stmt = stmt.where(column == filters[field])
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

def audit(session: Session, principal: Principal, action: str, target: str = "", **details: Any) -> None:
    """Record that ``principal`` did ``action`` to ``target``, in the caller's transaction."""
    session.add(AuditEntry(api_key_id=principal.key_id, merchant_id=principal.merchant_id, action=action,
                           target=target[:200], details=details))


def audit_log(session: Session, scope: Scope, after: str | None):
    """A page of audit entries, newest first: every entry for an admin, a merchant's own keys' otherwise."""
    stmt = scope.only(select(AuditEntry), AuditEntry.merchant_id)
    if after:
        stmt = stmt.where(AuditEntry.id < int(after))
    rows = list(session.scalars(stmt.order_by(AuditEntry.id.desc()).limit(PAGE + 1)))
    more = len(rows) > PAGE
    rows = rows[:PAGE]
    return rows, (str(rows[-1].id) if more else None)
