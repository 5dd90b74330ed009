"""On PostgreSQL with a large synthetic store, no hot query scans a big table sequentially.

The queries are the services' own statements (dead letters, the sweeper,
retention, keyset lists), compiled and EXPLAINed against 100,000 events with a
delivery and an attempt each.
"""

from __future__ import annotations

import datetime as dt
import json

import pytest
from sqlalchemy import select, text

from payhook_shared import deadletters, retention
from payhook_shared.store import Delivery, DeliveryAttempt, Email, Event, Store
from payhook_shared.store.migrate import upgrade
from support import environ_database_url

ROWS = 100_000
BIG_TABLES = {"events", "deliveries", "delivery_attempts", "emails"}
NOW = dt.datetime(2026, 6, 1, tzinfo=dt.timezone.utc)

SEED = f"""
INSERT INTO merchants (id, name, callback_token, settings, created_at, enabled)
SELECT 'mch_' || m, 'm' || m, md5(m::text), '{{}}', now(), true FROM generate_series(1, 20) m;
INSERT INTO endpoints (id, merchant_id, url, description, secret, enabled, created_at, updated_at,
                       consecutive_failures)
SELECT 'ep_' || m, 'mch_' || m, 'https://shop.example/' || m, '', 'whsec_x', true, now(), now(), 0
FROM generate_series(1, 20) m;
INSERT INTO events (id, merchant_id, provider, type, status, amount_minor, currency, receipt, reference,
                    provider_ids, phone, result_code, occurred_at, received_at, priority, dedupe_key,
                    details, raw_payload)
SELECT 'evt_' || lpad(i::text, 12, '0'), 'mch_' || mod(i, 20) + 1, 'mpesa', 'mpesa.stk_push', 'succeeded',
       i, 'KES', 'R' || i, 'ws_' || i, '{{}}', '2547' || lpad(mod(i, 100000000)::text, 8, '0'), '0',
       now(), timestamptz '2026-06-01' - (i || ' minutes')::interval, 2, 'stk:' || i, '{{}}', '{{}}'
FROM generate_series(1, {ROWS}) i;
INSERT INTO deliveries (id, event_id, endpoint_id, merchant_id, state, priority, attempts, next_attempt_at,
                        created_at, updated_at, round_start, last_category, dead_at)
SELECT 'dlv_' || lpad(i::text, 12, '0'), 'evt_' || lpad(i::text, 12, '0'), 'ep_' || mod(i, 20) + 1,
       'mch_' || mod(i, 20) + 1, CASE WHEN mod(i, 500) = 0 THEN 'dead' WHEN mod(i, 997) = 0 THEN 'pending' ELSE 'done' END,
       2, 1, timestamptz '2026-06-01' - (i || ' minutes')::interval, now(), now(), 0,
       CASE WHEN mod(i, 500) = 0 THEN 'server_error' ELSE 'success' END,
       CASE WHEN mod(i, 500) = 0 THEN timestamptz '2026-06-01' - (i || ' minutes')::interval END
FROM generate_series(1, {ROWS}) i;
INSERT INTO delivery_attempts (delivery_id, number, started_at, duration_ms, status_code, category)
SELECT 'dlv_' || lpad(i::text, 12, '0'), 1, now(), 5, 200, 'success' FROM generate_series(1, {ROWS}) i;
INSERT INTO emails (id, merchant_id, event_id, template, recipients, context, dedupe_key, state, priority,
                    attempts, next_attempt_at, created_at, updated_at)
SELECT 'eml_' || i, 'mch_' || mod(i, 20) + 1, 'evt_' || lpad(i::text, 12, '0'), 'payment_received', '[]', '{{}}',
       'pr:' || i, 'done', 2, 1, now(), now(), now()
FROM generate_series(1, {ROWS}) i;
ANALYZE;
"""


@pytest.fixture(scope="module")
def big_store(postgres):
    if postgres is None:
        pytest.skip("query plans are checked on PostgreSQL (TEST_DATABASE_URL)")
    name = postgres.create()
    store = Store(postgres.url_for(name))
    upgrade(postgres.url_for(name))
    with store.engine.begin() as conn:
        conn.exec_driver_sql("SET statement_timeout = 0")
        for statement in SEED.split(";\n"):
            if statement.strip():
                conn.exec_driver_sql(statement)
    yield store
    store.dispose()
    postgres.drop(name)


def _seq_scans(plan: dict) -> list[str]:
    found = []
    if plan.get("Node Type") == "Seq Scan" and plan.get("Relation Name") in BIG_TABLES:
        found.append(plan["Relation Name"])
    for child in plan.get("Plans", []):
        found += _seq_scans(child)
    return found


def explain(store: Store, stmt) -> list[str]:
    sql = str(stmt.compile(store.engine, compile_kwargs={"literal_binds": True}))
    with store.engine.connect() as conn:
        plan = conn.execute(text(f"EXPLAIN (FORMAT JSON) {sql}")).scalar()
    return _seq_scans((plan if isinstance(plan, list) else json.loads(plan))[0]["Plan"])


def hot_queries():
    dead = deadletters.Filter
    yield "dead letters of a merchant", dead(merchant_id="mch_3").apply(select(Delivery)).order_by(
        Delivery.id.desc()).limit(51)
    yield "dead letters of an endpoint since", dead(endpoint_id="ep_4", since=NOW - dt.timedelta(days=30)).apply(
        select(Delivery)).order_by(Delivery.id.desc()).limit(51)
    yield "dead letters by category, next page", dead(category="server_error").apply(select(Delivery)).where(
        Delivery.id < "dlv_000000100000").order_by(Delivery.id.desc()).limit(51)
    yield "recover an endpoint", select(Delivery.id).where(
        Delivery.endpoint_id == "ep_5", Delivery.state == "dead", Delivery.created_at >= NOW - dt.timedelta(days=1),
        Delivery.id > "").order_by(Delivery.id).limit(500)
    yield "sweeper: due deliveries", select(Delivery).where(
        Delivery.state == "pending", Delivery.next_attempt_at <= NOW).order_by(Delivery.next_attempt_at).limit(500)
    yield "sweeper: expired claims", select(Delivery.id).where(Delivery.state == "sending",
                                                               Delivery.lease_until < NOW)
    yield "a delivery's attempts", select(DeliveryAttempt).where(
        DeliveryAttempt.delivery_id == "dlv_000000012345").order_by(DeliveryAttempt.id)
    yield "an event's deliveries", select(Delivery).where(Delivery.event_id == "evt_000000012345")
    yield "events of a merchant, keyset", select(Event).where(
        Event.merchant_id == "mch_7", Event.id > "evt_000000150000").order_by(Event.id).limit(51)
    yield "event by dedupe key", select(Event.id).where(Event.merchant_id == "mch_7",
                                                        Event.dedupe_key == "stk:777")
    yield "retention: purgeable events", retention._purgeable(NOW - dt.timedelta(days=90), None, [], 500)
    yield "retention: raw payloads", select(Event.id).where(
        Event.received_at < NOW - dt.timedelta(days=100), Event.raw_payload != "").limit(500)
    yield "emails due", select(Email).where(Email.state == "pending", Email.next_attempt_at <= NOW).limit(500)


@pytest.mark.parametrize("name, stmt", list(hot_queries()), ids=[n for n, _ in hot_queries()])
def test_hot_query_uses_an_index(big_store, name, stmt):
    assert explain(big_store, stmt) == [], f"{name} scans a big table sequentially"


def test_the_check_sees_a_sequential_scan(big_store):
    unindexed = select(Event.id).where(Event.phone.like("%149")).limit(50)
    assert explain(big_store, unindexed) == ["events"]
