"""Retention removes exactly what is past its time and never what is still owed."""

from __future__ import annotations

import datetime as dt
import json
import threading

from sqlalchemy import func, select, update

from factories import fixture_bytes, merchant_with_endpoints, stk_url
from payhook_shared import retention
from payhook_shared.store import (Delivery, DeliveryAttempt, Email, Event, IntentState, JobState, Merchant,
                                   PaymentIntent, StatusCheck, StatusCheckState)

NOW = dt.datetime.now(dt.timezone.utc)


def post(client, merchant, tag: str) -> str:
    body = fixture_bytes("mpesa/stk_success.json").replace(b"ws_CO_191220191020363925", tag.encode())
    assert client.post(stk_url(merchant), data=body, content_type="application/json").status_code == 200
    return tag


def age(store, tag: str, days: float, delivery_state: str = JobState.DONE.value,
        email_state: str = JobState.DONE.value) -> str:
    """Make the event with ``tag`` ``days`` old, its deliveries and emails in the given states."""
    with store.write() as session:
        event_id = session.scalar(select(Event.id).where(Event.reference == tag))
        session.execute(update(Event).where(Event.id == event_id)
                        .values(received_at=NOW - dt.timedelta(days=days)))
        session.execute(update(Delivery).where(Delivery.event_id == event_id).values(state=delivery_state))
        session.execute(update(Email).where(Email.event_id == event_id).values(state=email_state))
        for delivery_id in session.scalars(select(Delivery.id).where(Delivery.event_id == event_id)):
            session.add(DeliveryAttempt(delivery_id=delivery_id, number=1, started_at=NOW, duration_ms=5,
                                        status_code=200, category="success"))
    return event_id


def remaining(store) -> dict[str, str]:
    with store.read() as session:
        return dict(session.execute(select(Event.reference, Event.raw_payload)).all())


def test_purge_removes_exactly_what_is_past_retention(client, store, tmp_path):
    merchant, _ = merchant_with_endpoints(store, "http://127.0.0.1:9/a")
    for tag in ("fresh", "raw-old", "old-done", "old-pending", "old-dead", "old-sending", "old-mail-pending"):
        post(client, merchant, tag)
    age(store, "fresh", 1)
    age(store, "raw-old", 40)
    gone = age(store, "old-done", 100)
    age(store, "old-pending", 100, delivery_state=JobState.PENDING.value)
    age(store, "old-dead", 100, delivery_state=JobState.DEAD.value)
    age(store, "old-sending", 100, delivery_state=JobState.SENDING.value)
    age(store, "old-mail-pending", 100, email_state=JobState.PENDING.value)

    purged = retention.purge(store, export_dir=tmp_path, batch=2)

    left = remaining(store)
    assert set(left) == {"fresh", "raw-old", "old-pending", "old-dead", "old-sending", "old-mail-pending"}
    assert left["fresh"] != "" and left["raw-old"] == ""
    assert (purged.events, purged.deliveries, purged.attempts, purged.emails) == (1, 1, 1, 1)
    assert purged.raw_payloads == 5  # every event older than 30 days but the one deleted outright
    with store.read() as session:
        assert session.scalar(select(func.count()).select_from(Delivery).where(Delivery.event_id == gone)) == 0
    exported = [json.loads(line) for line in next(tmp_path.glob("purged-*.jsonl")).read_text().splitlines()]
    assert [e["id"] for e in exported] == [gone] and exported[0]["deliveries"][0]["attempts"][0]["status_code"] == 200
    assert retention.purge(store) == retention.Purged()


def test_merchant_retention_overrides_the_default(client, store):
    keeper, _ = merchant_with_endpoints(store, "http://127.0.0.1:9/a")
    brief, _ = merchant_with_endpoints(store, "http://127.0.0.1:9/b")
    with store.write() as session:
        session.get(Merchant, keeper.id).settings = {"retention": {"events_days": 365, "raw_payload_days": 365}}
        session.get(Merchant, brief.id).settings = {"retention": {"events_days": 7}}
    post(client, keeper, "keeper-old")
    post(client, brief, "brief-old")
    age(store, "keeper-old", 100)
    age(store, "brief-old", 10)
    retention.purge(store)
    assert remaining(store) == {"keeper-old": remaining(store)["keeper-old"]}
    assert remaining(store)["keeper-old"] != ""


def _made(prefix: str, days: float, tag: str) -> str:
    """An id of ``prefix`` as ``ids.new_id`` made it ``days`` ago."""
    return f"{prefix}_{int((NOW - dt.timedelta(days=days)).timestamp() * 1000):012x}{tag.encode().hex():0<16}"[:36]


def test_settled_intents_and_status_checks_go_with_the_events_of_their_age(client, store):
    merchant, _ = merchant_with_endpoints(store, "http://127.0.0.1:9/a")
    keeper, _ = merchant_with_endpoints(store, "http://127.0.0.1:9/b")
    with store.write() as session:
        session.get(Merchant, keeper.id).settings = {"retention": {"raw_payload_days": 30, "events_days": 365}}
        rows = {  # tag: (merchant, age in days, settled)
            "old-settled": (merchant, 100, True), "old-pending": (merchant, 100, False),
            "young-settled": (merchant, 10, True), "kept-by-its-merchant": (keeper, 100, True),
        }
        for tag, (owner, days, settled) in rows.items():
            created = NOW - dt.timedelta(days=days)
            session.add(PaymentIntent(
                id=_made("pin", days, tag), merchant_id=owner.id, checkout_request_id=f"ws_CO_{tag}", source="api",
                phone="254708374149", created_at=created,
                state=IntentState.COMPLETED.value if settled else IntentState.PENDING.value))
            session.add(StatusCheck(
                id=_made("stc", days, tag), merchant_id=owner.id, event_id=f"evt_{tag}", event_type="mpesa.b2c",
                originator_conversation_id=f"oc-{tag}", created_at=created,
                state=StatusCheckState.RESOLVED.value if settled else StatusCheckState.PENDING.value))

    purged = retention.purge(store, batch=1)

    assert (purged.payment_intents, purged.status_checks) == (1, 1)
    with store.read() as session:
        left = {model: set(session.scalars(select(model.id))) for model in (PaymentIntent, StatusCheck)}
    for model, prefix in ((PaymentIntent, "pin"), (StatusCheck, "stc")):
        assert left[model] == {_made(prefix, rows[t][1], t) for t in rows if t != "old-settled"}
    assert retention.purge(store) == retention.Purged()


def test_purge_runs_while_ingest_continues(client, store, webhook_app):
    # Twelve purge batches (120 old events, 10 a batch) interleave with 40 callbacks: what matters is that
    # batches and ingest overlap, not how many rows each has (300 old and 60 new took five times as long).
    merchant, _ = merchant_with_endpoints(store, "http://127.0.0.1:9/a")
    for i in range(120):
        post(client, merchant, f"old-{i}")
    with store.write() as session:
        session.execute(update(Event).values(received_at=NOW - dt.timedelta(days=200)))
        session.execute(update(Delivery).values(state=JobState.DONE.value))
        session.execute(update(Email).values(state=JobState.DONE.value))
    statuses = []

    def ingest():
        other = webhook_app.test_client()
        for i in range(40):
            body = fixture_bytes("mpesa/stk_success.json").replace(b"ws_CO_191220191020363925", f"new-{i}".encode())
            statuses.append(other.post(stk_url(merchant), data=body, content_type="application/json").status_code)

    feeder = threading.Thread(target=ingest)
    feeder.start()
    purged = retention.purge(store, batch=10)
    feeder.join()
    assert purged.events == 120
    assert statuses == [200] * 40
    assert len(remaining(store)) == 40
