"""Sending events again: resending one event, and replaying a range of events to one endpoint.

Both only change rows, as a dead-letter retry does: a delivery becomes pending
and due now with no Redis message, and the delivery-worker's sweeper enqueues
it. An event is delivered at most once per endpoint at a time, because a
delivery is one row per (event, endpoint): a resend re-arms that row for a new
round of attempts (same ``webhook-id``, the event id; new attempts in its log),
and a replay creates the row only where none exists, so running a replay twice
never sends twice.

A replay is a job in the store (``Replay``): the webhook-service records it and
sends a ``RunReplay`` message; the delivery-worker claims the row, handles one
batch of events and, in the same transaction, moves the replay's ``cursor``
past them, then sends the message for the next batch. A worker that dies
mid-batch leaves the batch undone; its claim expires, the sweeper sends the
message again, and the batch is done by whoever claims it next.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Iterable, Sequence
from typing import Any

import dramatiq
from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from . import deadletters, ids, jobs
from .broker import RedisBroker
from .callbacks.mpesa import C2B_VALIDATION
from .events import selects
from .messages import RunReplay
from .priority import Priority
from .store import Delivery, Endpoint, Event, JobState, Replay, Store
from .store.models import utcnow

log = logging.getLogger(__name__)

PENDING, SENDING, DONE, DEAD = (s.value for s in (JobState.PENDING, JobState.SENDING, JobState.DONE, JobState.DEAD))
#: Events handled per replay message: one short transaction each.
BATCH = 200
#: How long a worker holds a replay while it handles one batch.
LEASE = dt.timedelta(seconds=60)
#: Replays fill in the past: they wait behind live traffic.
PRIORITY = Priority.LOW
# Ids start with the time they were minted, taken with received_at: a received range is an id range,
# give or take far less than this (as the console's events list relies on too).
ID_TIME_MARGIN = dt.timedelta(minutes=15)
# Types an endpoint receives only when it lists them, as ingest decides (a C2B validation is not a payment).
OPT_IN_TYPES = frozenset({C2B_VALIDATION})


def wants(endpoint: Endpoint, event_type: str) -> bool:
    """Whether ``endpoint``'s event-type filter takes ``event_type`` (ingest's rule)."""
    if event_type in OPT_IN_TYPES:
        return bool(endpoint.event_types) and event_type in endpoint.event_types
    return not endpoint.event_types or selects(endpoint.event_types, event_type)


def _insert(dialect: str):
    return pg_insert if dialect == "postgresql" else sqlite_insert


def _new_deliveries(session: Session, rows: list[dict[str, Any]]) -> int:
    """Insert deliveries, skipping any (event, endpoint) that has one already; returns how many were new."""
    if not rows:
        return 0
    stmt = (_insert(session.get_bind().dialect.name)(Delivery).values(rows)
            .on_conflict_do_nothing(index_elements=["event_id", "endpoint_id"]).returning(Delivery.id))
    # Counted from RETURNING: a multi-row insert's rowcount is not reliable across drivers.
    return len(session.execute(stmt).all())


def _delivery_row(event_id: str, endpoint_id: str, merchant_id: str, priority: int, now: dt.datetime) -> dict:
    # No message: the sweeper enqueues it, as for a retried dead letter.
    return {"id": ids.new_id("dlv"), "event_id": event_id, "endpoint_id": endpoint_id, "merchant_id": merchant_id,
            "state": PENDING, "priority": priority, "attempts": 0, "round_start": 0, "next_attempt_at": now,
            "created_at": now, "updated_at": now}


# -- resend -------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Resent:
    """What a resend did, per endpoint: ``queued`` (sent again now) or ``in_flight`` (being sent already)."""

    event_id: str
    endpoints: dict[str, str]


def resend(session: Session, event: Event, endpoints: Iterable[Endpoint], now: dt.datetime | None = None) -> Resent:
    """Deliver ``event`` again to each of ``endpoints``, delivered before or not, in ``session``'s transaction.

    A finished delivery (done or dead) starts a new round of attempts; a waiting
    one is brought forward; one being attempted right now is left to finish; an
    endpoint with no delivery of the event gets one.
    """
    now = now or utcnow()
    endpoints = list(endpoints)
    existing = {d.endpoint_id: d for d in session.scalars(
        select(Delivery).where(Delivery.event_id == event.id,
                               Delivery.endpoint_id.in_([e.id for e in endpoints])).with_for_update())}
    outcome: dict[str, str] = {}
    for endpoint in endpoints:
        delivery = existing.get(endpoint.id)
        if delivery is None:
            _new_deliveries(session, [_delivery_row(event.id, endpoint.id, event.merchant_id, event.priority, now)])
        elif delivery.state == SENDING:
            outcome[endpoint.id] = "in_flight"
            continue
        else:
            session.execute(
                update(Delivery).where(Delivery.id == delivery.id, Delivery.state != SENDING)
                .values(state=PENDING, next_attempt_at=now, message_id=None, queue_name=None, lease_until=None,
                        round_start=Delivery.attempts, dead_at=None, delivered_at=None, last_error=None,
                        updated_at=now)
                .execution_options(synchronize_session=False))
        outcome[endpoint.id] = "queued"
    return Resent(event.id, outcome)


# -- replay -------------------------------------------------------------------------------------

def start(session: Session, endpoint: Endpoint, since: dt.datetime, until: dt.datetime | None,
          types: Sequence[str] | None, only_failed: bool, requested_by: str,
          now: dt.datetime | None = None) -> tuple[Replay, dramatiq.Message]:
    """Record a replay job for ``endpoint`` in ``session``; send the returned message once it commits.

    Without ``until`` the range ends now: events arriving later are delivered by ingest, and a replay of a
    busy merchant never chases them.
    """
    now = now or utcnow()
    replay = Replay(id=ids.new_id("rpl"), merchant_id=endpoint.merchant_id, endpoint_id=endpoint.id, since=since,
                    until=until or now, types=list(types) if types else None, only_failed=only_failed,
                    requested_by=requested_by, state=PENDING, priority=int(PRIORITY), attempts=0,
                    next_attempt_at=now, scanned=0, created=0, revived=0, skipped=0, created_at=now, updated_at=now)
    message = jobs.plan(message_for(replay))
    jobs.record(replay, message)
    session.add(replay)
    return replay, message


def message_for(replay: Any) -> RunReplay:
    """The message that runs ``replay``'s next batch (a row or a sweeper's columns)."""
    return RunReplay(replay_id=replay.id, merchant_id=replay.merchant_id, priority=Priority(replay.priority))


def events_statement(replay: Replay, limit: int):
    """The replay's next events: its merchant's, in its range and types, after its cursor, in id order.

    Walks ``ix_events_merchant_id_id`` from the cursor (or the id the range starts at) and no further
    than the id the range ends at.
    """
    stmt = select(Event.id, Event.type, Event.priority).where(
        Event.merchant_id == replay.merchant_id, Event.received_at >= replay.since,
        Event.id >= ids.earliest("evt", replay.since - ID_TIME_MARGIN))
    if replay.cursor:
        stmt = stmt.where(Event.id > replay.cursor)
    if replay.until:
        stmt = stmt.where(Event.received_at < replay.until,
                          Event.id < ids.earliest("evt", replay.until + ID_TIME_MARGIN))
    if replay.types:
        stmt = stmt.where(Event.type.in_(replay.types))
    return stmt.order_by(Event.id).limit(limit)


class _ClaimLost(Exception):
    """The replay's claim expired and was taken over while a batch was being handled."""


def run(store: Store, broker: RedisBroker, replay_id: str, batch: int = BATCH, lease: dt.timedelta = LEASE,
        now: dt.datetime | None = None) -> str:
    """Handle the next batch of a replay; returns ``"skipped"``, ``"more"`` or ``"done"``.

    Skips when the replay is not due, finished, or held by another worker, so a
    duplicate message does nothing.
    """
    now = now or utcnow()
    lease_until = now + lease
    with store.write() as session:
        if session.execute(jobs.claiming(Replay, replay_id, lease_until, now)).rowcount != 1:
            return "skipped"
    try:
        with store.write() as session:
            message, counts = _batch(session, replay_id, batch, lease_until, now)
    except _ClaimLost:
        return "skipped"
    if message is not None:
        try:
            broker.enqueue(message)
        except Exception:
            log.warning("could not enqueue the next batch of replay %s; the sweeper will", replay_id, exc_info=True)
    log.info("replay %s: %d events looked at, %d deliveries created, %d revived, %d skipped%s", replay_id,
             counts["scanned"], counts["created"], counts["revived"], counts["skipped"],
             "" if message is not None else "; finished")
    return "more" if message is not None else "done"


def _batch(session: Session, replay_id: str, batch: int, lease_until: dt.datetime,
           now: dt.datetime) -> tuple[dramatiq.Message | None, dict[str, int]]:
    """One batch of a claimed replay, recorded with the replay's progress; the next batch's message, if any."""
    replay = session.get(Replay, replay_id)
    endpoint = session.get(Endpoint, replay.endpoint_id)
    counts = {"scanned": replay.scanned, "created": replay.created, "revived": replay.revived,
              "skipped": replay.skipped}
    message = None
    if endpoint is None or not endpoint.enabled:
        values: dict[str, Any] = {"state": DEAD, "finished_at": now, "last_error": "endpoint disabled"}
    else:
        events = session.execute(events_statement(replay, batch)).all()
        _deliver(session, replay, endpoint, events, counts, now)
        values = {"cursor": events[-1].id if events else replay.cursor, **counts}
        if len(events) < batch:
            values.update(state=DONE, finished_at=now)
        else:
            message = jobs.plan(message_for(replay))
            values.update(state=PENDING, next_attempt_at=now, queue_name=message.queue_name,
                          message_id=message.options[jobs.REDIS_ID])
    # Only while the claim is still ours: a worker whose lease ran out must not record its batch twice.
    held = session.execute(
        update(Replay).where(Replay.id == replay_id, Replay.state == SENDING, Replay.lease_until == lease_until)
        .values(lease_until=None, updated_at=now, **values).execution_options(synchronize_session=False)
    ).rowcount
    if held != 1:
        raise _ClaimLost(replay_id)
    return message, counts


def _deliver(session: Session, replay: Replay, endpoint: Endpoint, events: Sequence[Any], counts: dict[str, int],
             now: dt.datetime) -> None:
    """Create or revive the deliveries of ``events`` to ``endpoint``; count what happened in ``counts``."""
    counts["scanned"] += len(events)
    wanted = [e for e in events if wants(endpoint, e.type)]
    counts["skipped"] += len(events) - len(wanted)
    if not wanted:
        return
    states = dict(session.execute(
        select(Delivery.event_id, Delivery.id).where(Delivery.event_id.in_([e.id for e in wanted]),
                                                     Delivery.endpoint_id == endpoint.id)).all())
    dead = list(session.scalars(select(Delivery.id).where(Delivery.id.in_(list(states.values())),
                                                          Delivery.state == DEAD))) if states else []
    revived = deadletters.retry(session, dead, now) if dead else 0
    missing = [] if replay.only_failed else [e for e in wanted if e.id not in states]
    created = _new_deliveries(session, [_delivery_row(e.id, endpoint.id, replay.merchant_id, int(PRIORITY), now)
                                        for e in missing])
    counts["revived"] += revived
    counts["created"] += created
    counts["skipped"] += len(wanted) - revived - created
