"""Dead letters: deliveries that ran out of attempts, and what operators do with them.

One implementation behind both the admin API and the CLI. Retrying only
changes rows (state ``pending``, due now, no message); the sweeper enqueues
them within a second, so a bulk retry of a million rows never floods Redis
in one go.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence

from sqlalchemy import Select, delete, select, update
from sqlalchemy.orm import Session, selectinload

from .store import Delivery, DeliveryAttempt, JobState
from .store.models import utcnow

DEAD = JobState.DEAD.value
BATCH = 500


@dataclasses.dataclass(frozen=True)
class Filter:
    """Which dead letters an operation applies to; every field narrows it."""

    merchant_id: str | None = None
    endpoint_id: str | None = None
    category: str | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None

    def apply(self, stmt: Select) -> Select:
        """``stmt`` restricted to dead deliveries matching this filter."""
        stmt = stmt.where(Delivery.state == DEAD)
        if self.merchant_id:
            stmt = stmt.where(Delivery.merchant_id == self.merchant_id)
        if self.endpoint_id:
            stmt = stmt.where(Delivery.endpoint_id == self.endpoint_id)
        if self.category:
            stmt = stmt.where(Delivery.last_category == self.category)
        if self.since:
            stmt = stmt.where(Delivery.dead_at >= self.since)
        if self.until:
            stmt = stmt.where(Delivery.dead_at < self.until)
        return stmt


def list_dead(session: Session, where: Filter, limit: int = 50, after: str | None = None) -> list[Delivery]:
    """A page of dead letters, newest id first; pass the last id as ``after`` for the next page."""
    stmt = where.apply(select(Delivery)).order_by(Delivery.id.desc()).limit(limit)
    if after:
        stmt = stmt.where(Delivery.id < after)
    return list(session.scalars(stmt))


def inspect(session: Session, delivery_id: str) -> Delivery | None:
    """A delivery with its event and every attempt, whatever its state."""
    return session.scalar(
        select(Delivery).where(Delivery.id == delivery_id)
        .options(selectinload(Delivery.attempt_log), selectinload(Delivery.event))
    )


def _revive(session: Session, ids: Sequence[str], now: dt.datetime) -> int:
    return session.execute(
        update(Delivery).where(Delivery.id.in_(ids), Delivery.state == DEAD)
        .values(state=JobState.PENDING.value, next_attempt_at=now, message_id=None, lease_until=None,
                round_start=Delivery.attempts, dead_at=None)
        .execution_options(synchronize_session=False)
    ).rowcount


def retry(session: Session, delivery_ids: Sequence[str], now: dt.datetime | None = None) -> int:
    """Put the given dead letters back in line with a fresh retry schedule; returns how many."""
    return _revive(session, list(delivery_ids), now or utcnow())


def retry_matching(store, where: Filter, now: dt.datetime | None = None) -> int:
    """Retry every dead letter matching ``where``, in batches of short transactions."""
    now = now or utcnow()
    total = 0
    while True:
        with store.write() as session:
            ids = list(session.scalars(where.apply(select(Delivery.id)).limit(BATCH)))
            if not ids:
                return total
            total += _revive(session, ids, now)


def purge_matching(store, where: Filter) -> int:
    """Delete every dead letter matching ``where`` with its attempts; returns how many."""
    total = 0
    while True:
        with store.write() as session:
            ids = list(session.scalars(where.apply(select(Delivery.id)).limit(BATCH)))
            if not ids:
                return total
            session.execute(delete(DeliveryAttempt).where(DeliveryAttempt.delivery_id.in_(ids)))
            total += session.execute(delete(Delivery).where(Delivery.id.in_(ids), Delivery.state == DEAD)).rowcount


def recover(store, endpoint_id: str, since: dt.datetime, now: dt.datetime | None = None) -> int:
    """Re-deliver every failed delivery of an endpoint created since ``since``; returns how many."""
    now = now or utcnow()
    total = 0
    last = ""
    while True:
        with store.write() as session:
            ids = list(session.scalars(
                select(Delivery.id).where(Delivery.endpoint_id == endpoint_id, Delivery.state == DEAD,
                                          Delivery.created_at >= since, Delivery.id > last)
                .order_by(Delivery.id).limit(BATCH)
            ))
            if not ids:
                return total
            last = ids[-1]
            total += _revive(session, ids, now)
