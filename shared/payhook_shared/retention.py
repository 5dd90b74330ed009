"""Retention: keep the store's size predictable without losing anything still owed.

Defaults: raw payloads are blanked after 30 days; events, with their
deliveries, attempts and emails, are deleted after 90, and so are settled STK
Push intents and Transaction Status checks; console sign-in links a day after
they expire. A merchant may set its
own periods in ``settings["retention"] = {"raw_payload_days": n, "events_days": n}``,
within the bounds of ``merchant_settings.RetentionSchema``.
An event is never deleted while any of its deliveries is pending, being sent,
or dead and unresolved (an operator may still retry it), nor while any of its
emails is unsent. Work goes in small batches of short transactions, so ingest
carries on beside it; what is deleted can first be exported to JSON Lines.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sqlalchemy import delete, exists, select, update

from . import merchant_settings
from .ids import earliest
from .store import (Delivery, DeliveryAttempt, Email, Event, IntentState, JobState, Merchant, PaymentIntent,
                    SignInLink, StatusCheck, StatusCheckState, Store)
from .store.models import utcnow

log = logging.getLogger(__name__)

FINISHED_EMAIL = (JobState.DONE.value, JobState.DEAD.value, JobState.SUPPRESSED.value)
# What keeps an event, named rather than "not finished": the state indexes can then find these few rows
# (ix_deliveries_due, ix_deliveries_dead_id, ix_emails_due) where "state NOT IN" could only be filtered.
OWED_DELIVERY = (JobState.PENDING.value, JobState.SENDING.value, JobState.DEAD.value)
OWED_EMAIL = (JobState.PENDING.value, JobState.SENDING.value)
BLANK = ""
# Console sign-in links are kept a day past their expiry, for the record, then deleted.
SIGN_IN_LINK_DAYS = 1
# Settled intents and status checks go with the events of their age: each holds a phone number or a
# transaction's references, and nothing is owed on it any more. (model, its ids' prefix, still owed, count)
_SETTLED = ((PaymentIntent, "pin", IntentState.PENDING.value, "payment_intents"),
            (StatusCheck, "stc", StatusCheckState.PENDING.value, "status_checks"))


@dataclasses.dataclass(frozen=True)
class Policy:
    """How long raw payloads and events are kept, in days."""

    raw_payload_days: int = 30
    events_days: int = 90

    def overridden(self, settings: dict[str, Any] | None) -> "Policy":
        """This policy with a merchant's valid overrides applied."""
        return dataclasses.replace(self, **merchant_settings.retention(settings))


@dataclasses.dataclass
class Purged:
    """What one purge run removed."""

    raw_payloads: int = 0
    events: int = 0
    deliveries: int = 0
    attempts: int = 0
    emails: int = 0
    payment_intents: int = 0
    status_checks: int = 0
    sign_in_links: int = 0


def _groups(store: Store, default: Policy) -> list[tuple[Policy, list[str] | None, list[str]]]:
    """``(policy, merchant ids or None for "everyone else", ids to exclude)`` per distinct policy."""
    with store.read() as session:
        rows = session.execute(select(Merchant.id, Merchant.settings)).all()
    own: dict[Policy, list[str]] = {}
    for merchant_id, settings in rows:
        policy = default.overridden(settings)
        if policy != default:
            own.setdefault(policy, []).append(merchant_id)
    special = [m for ids in own.values() for m in ids]
    return [(default, None, special)] + [(policy, ids, []) for policy, ids in own.items()]


def _scope(stmt, only: list[str] | None, exclude: list[str], merchant_id=Event.merchant_id):
    if only is not None:
        stmt = stmt.where(merchant_id.in_(only))
    if exclude:
        stmt = stmt.where(merchant_id.not_in(exclude))
    return stmt


def _purgeable(cutoff: dt.datetime, only: list[str] | None, exclude: list[str], batch: int):
    owed_delivery = exists().where(Delivery.event_id == Event.id, Delivery.state.in_(OWED_DELIVERY))
    owed_email = exists().where(Email.event_id == Event.id, Email.state.in_(OWED_EMAIL))
    stmt = select(Event.id).where(Event.received_at < cutoff, ~owed_delivery, ~owed_email)
    return _scope(stmt, only, exclude).order_by(Event.received_at).limit(batch)


def _export(path: Path, events: Iterable[Event], deliveries: list[Delivery], attempts: list[DeliveryAttempt]) -> None:
    by_event: dict[str, list[dict]] = {}
    attempts_of: dict[str, list[dict]] = {}
    for a in attempts:
        attempts_of.setdefault(a.delivery_id, []).append({
            "number": a.number, "started_at": a.started_at.isoformat(), "status_code": a.status_code,
            "category": a.category, "duration_ms": a.duration_ms, "error": a.error})
    for d in deliveries:
        by_event.setdefault(d.event_id, []).append({
            "id": d.id, "endpoint_id": d.endpoint_id, "state": d.state, "attempts": attempts_of.get(d.id, [])})
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as fh:
        for e in events:
            fh.write(json.dumps({
                "id": e.id, "merchant_id": e.merchant_id, "type": e.type, "status": e.status,
                "amount_minor": e.amount_minor, "currency": e.currency, "receipt": e.receipt,
                "reference": e.reference, "received_at": e.received_at.isoformat(),
                "raw_payload": e.raw_payload, "deliveries": by_event.get(e.id, []),
            }, sort_keys=True) + "\n")


def purge(store: Store, default: Policy = Policy(), *, now: dt.datetime | None = None, batch: int = 500,
          export_dir: str | Path | None = None, max_batches: int = 10_000) -> Purged:
    """Apply retention once; returns counts of what was removed."""
    now = now or utcnow()
    done = Purged()
    for policy, only, exclude in _groups(store, default):
        # Whole events go first, so an export of what is deleted still holds its raw payload.
        event_cutoff = now - dt.timedelta(days=policy.events_days)
        for _ in range(max_batches):
            with store.write() as session:
                ids = list(session.scalars(_purgeable(event_cutoff, only, exclude, batch)))
                if not ids:
                    break
                delivery_ids = list(session.scalars(select(Delivery.id).where(Delivery.event_id.in_(ids))))
                if export_dir:
                    _export(Path(export_dir) / f"purged-{now:%Y%m%d}.jsonl",
                            session.scalars(select(Event).where(Event.id.in_(ids))),
                            list(session.scalars(select(Delivery).where(Delivery.id.in_(delivery_ids)))),
                            list(session.scalars(select(DeliveryAttempt)
                                                 .where(DeliveryAttempt.delivery_id.in_(delivery_ids)))))
                done.attempts += session.execute(
                    delete(DeliveryAttempt).where(DeliveryAttempt.delivery_id.in_(delivery_ids))).rowcount
                done.deliveries += session.execute(delete(Delivery).where(Delivery.id.in_(delivery_ids))).rowcount
                done.emails += session.execute(delete(Email).where(Email.event_id.in_(ids))).rowcount
                done.events += session.execute(delete(Event).where(Event.id.in_(ids))).rowcount
        for model, prefix, owed, kind in _SETTLED:
            # Ids begin with their creation time: the primary key finds the old rows.
            older = model.id < earliest(prefix, event_cutoff)
            for _ in range(max_batches):
                with store.write() as session:
                    found = list(session.scalars(_scope(select(model.id).where(older, model.state != owed),
                                                        only, exclude, model.merchant_id).limit(batch)))
                    if not found:
                        break
                    removed = session.execute(delete(model).where(model.id.in_(found))).rowcount
                setattr(done, kind, getattr(done, kind) + removed)
        raw_cutoff = now - dt.timedelta(days=policy.raw_payload_days)
        for _ in range(max_batches):
            with store.write() as session:
                ids = list(session.scalars(_scope(
                    select(Event.id).where(Event.received_at < raw_cutoff, Event.raw_payload != BLANK),
                    only, exclude).limit(batch)))
                if not ids:
                    break
                done.raw_payloads += session.execute(
                    update(Event).where(Event.id.in_(ids)).values(raw_payload=BLANK)
                    .execution_options(synchronize_session=False)).rowcount
    # Notices about no event (endpoint and operator alerts) follow the default period once finished.
    alert_cutoff = now - dt.timedelta(days=default.events_days)
    for _ in range(max_batches):
        with store.write() as session:
            ids = list(session.scalars(select(Email.id).where(
                Email.event_id.is_(None), Email.state.in_(FINISHED_EMAIL), Email.created_at < alert_cutoff,
            ).limit(batch)))
            if not ids:
                break
            done.emails += session.execute(delete(Email).where(Email.id.in_(ids))).rowcount
    with store.write() as session:
        done.sign_in_links = session.execute(delete(SignInLink).where(
            SignInLink.expires_at < now - dt.timedelta(days=SIGN_IN_LINK_DAYS))).rowcount
    if any(dataclasses.astuple(done)):
        log.info("retention purged %s", dataclasses.asdict(done))
    return done
