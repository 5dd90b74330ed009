"""The console's reads give the same answers on SQLite and on PostgreSQL, whichever index answers them."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import update

from factories import merchant_with_endpoints
from payhook_shared import ids
from payhook_shared.store import Delivery, Event, JobState
from payhook_webhook.console import queries
from payhook_webhook.console.queries import Scope

NOW = dt.datetime.now(dt.timezone.utc)


def add_event(store, merchant, endpoint, *, type_: str = "mpesa.stk_push", phone: str | None = None,
              hours_ago: float = 0.0, state: str = JobState.DONE.value) -> str:
    """An event received ``hours_ago``, with an id minted then (as ingest mints it), and its delivery."""
    at = NOW - dt.timedelta(hours=hours_ago)
    event_id = ids.earliest("evt", at) + ids.new_id("x")[-16:]
    with store.write() as session:
        session.add(Event(id=event_id, merchant_id=merchant.id, provider="mpesa", type=type_, status="succeeded",
                          phone=phone, priority=2, dedupe_key=f"k:{event_id}", raw_payload="{}", received_at=at))
        session.add(Delivery(id=ids.new_id("dlv"), event_id=event_id, endpoint_id=endpoint.id,
                             merchant_id=merchant.id, priority=2, state=state, attempts=1,
                             delivered_at=at if state == JobState.DONE.value else None,
                             dead_at=at if state == JobState.DEAD.value else None))
    return event_id


def test_overview_counts_and_hours(store):
    merchant, [endpoint] = merchant_with_endpoints(store, "https://shop.example/hooks")
    other, [elsewhere] = merchant_with_endpoints(store, "https://other.example/hooks")
    add_event(store, merchant, endpoint, hours_ago=0.1)
    add_event(store, merchant, endpoint, hours_ago=0.2, state=JobState.DEAD.value)
    add_event(store, merchant, endpoint, hours_ago=5)
    add_event(store, merchant, endpoint, hours_ago=30)          # outside the 24 hours
    add_event(store, other, elsewhere, hours_ago=1, state=JobState.DEAD.value)
    with store.read() as session:
        mine = queries.overview(session, Scope(merchant.id), now=NOW)
        everyone = queries.overview(session, Scope(None), now=NOW)
    assert (mine["received"], mine["delivered"], mine["dead"], mine["dead_total"]) == (3, 2, 1, 1)
    assert (everyone["received"], everyone["dead"], everyone["dead_total"]) == (4, 2, 2)
    chart = dict(mine["chart"])
    assert sum(chart.values()) == 3
    assert chart[NOW.strftime("%Y-%m-%d %H")] + chart.get((NOW - dt.timedelta(hours=1)).strftime("%Y-%m-%d %H"), 0) >= 1
    assert chart[(NOW - dt.timedelta(hours=5)).strftime("%Y-%m-%d %H")] == 1


def test_phone_suffix_and_received_range(store):
    merchant, [endpoint] = merchant_with_endpoints(store, "https://shop.example/hooks")
    other, [elsewhere] = merchant_with_endpoints(store, "https://other.example/hooks")
    recent = add_event(store, merchant, endpoint, phone="254708374149", hours_ago=2)
    old = add_event(store, merchant, endpoint, type_="mpesa.b2c", phone="254711000149", hours_ago=24 * 60)
    add_event(store, other, elsewhere, type_="stripe.charge.refunded", phone="254722333444", hours_ago=1)
    with store.read() as session:

        def found(**filters) -> list[str]:
            return [e.id for e in queries.events(session, Scope(merchant.id), filters, None)[0]]
        assert found(phone="149") == [recent, old]
        assert found(phone="8374149") == [recent]
        assert found(phone="254708374149") == [recent]
        assert found(phone="49149") == []
        assert found(since=NOW - dt.timedelta(days=61), until=NOW - dt.timedelta(days=59)) == [old]
        assert found(since=NOW - dt.timedelta(hours=3)) == [recent]
        assert found(until=NOW - dt.timedelta(days=1)) == [old]
        # The range is on received_at: an id minted a few minutes before it still counts.
        session.execute(update(Event).where(Event.id == recent)
                        .values(received_at=NOW - dt.timedelta(hours=2) + dt.timedelta(minutes=5)))
        assert found(since=NOW - dt.timedelta(hours=2) + dt.timedelta(minutes=1)) == [recent]
