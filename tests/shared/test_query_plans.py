"""On PostgreSQL with a large synthetic store, no hot query reads a big table (or a whole index of it).

The queries are the services' own statements (dead letters, the sweeper,
retention, keyset lists), compiled and EXPLAINed against 100,000 events with a
delivery and an attempt each; and every statement the JSON API and the console
run for their list and detail pages, captured while the pages are requested and
EXPLAINed with the same parameters. ``make bench-store`` times the same pages on
1,000,000 events.
"""

from __future__ import annotations

import datetime as dt
import json
import re

import pytest
from sqlalchemy import event as sa_event
from sqlalchemy import select, text

from payhook_shared import deadletters, retention
from payhook_shared.store import Delivery, DeliveryAttempt, Email, Event, Store
from payhook_shared.store.migrate import upgrade
from payhook_webhook.app import create_app
from payhook_webhook.auth import create_api_key
from payhook_webhook.console import queries as console
from payhook_webhook.console.queries import Scope

pytestmark = pytest.mark.slow  # its module fixtures fill PostgreSQL with 100,000 events

ROWS = 100_000
BIG_TABLES = {"events", "deliveries", "delivery_attempts", "emails"}
NOW = dt.datetime(2026, 6, 1, tzinfo=dt.timezone.utc)

# Ids start with the time they were minted, as payhook_shared.ids makes them; 100,000 events over ~119 days,
# a few types, statuses and delivery states in realistic proportions.
SEED = f"""
INSERT INTO merchants (id, name, callback_token, settings, created_at, enabled)
SELECT 'mch_' || m, 'm' || m, md5(m::text), '{{}}', now(), true FROM generate_series(1, 20) m;
INSERT INTO endpoints (id, merchant_id, url, description, secret, enabled, created_at, updated_at,
                       consecutive_failures)
SELECT 'ep_' || m, 'mch_' || m, 'https://shop.example/' || m, '', 'whsec_x', true, now(), now(), 0
FROM generate_series(1, 20) m;
CREATE TEMPORARY TABLE seed AS
SELECT i, ts, lpad(to_hex((extract(epoch FROM ts) * 1000)::bigint), 12, '0') || lpad(to_hex(i), 16, '0') AS tail
FROM (SELECT i, timestamptz '2026-06-01' - i * interval '103 seconds' AS ts FROM generate_series(1, {ROWS}) i) s;
INSERT INTO events (id, merchant_id, provider, type, status, amount_minor, currency, receipt, reference,
                    provider_ids, phone, result_code, occurred_at, received_at, priority, dedupe_key,
                    details, raw_payload, provider_key)
SELECT 'evt_' || tail, 'mch_' || mod(i, 20) + 1, 'mpesa',
       CASE WHEN mod(i, 50) = 0 THEN 'mpesa.account_balance' WHEN mod(i, 10) = 3 THEN 'mpesa.b2c'
            WHEN mod(i, 5) = 1 THEN 'mpesa.c2b.confirmation' ELSE 'mpesa.stk_push' END,
       CASE WHEN mod(i, 97) = 0 THEN 'unknown' WHEN mod(i, 7) = 0 THEN 'failed' ELSE 'succeeded' END,
       i, 'KES', 'R' || upper(to_hex(i * 7919)), 'ws_CO_' || i, '{{}}',
       '2547' || lpad(mod(i * 7919, 100000000)::text, 8, '0'), '0', ts, ts, 2, 'stk:' || i, '{{}}', '{{}}',
       'ws_CO_' || i
FROM seed;
INSERT INTO deliveries (id, event_id, endpoint_id, merchant_id, state, priority, attempts, next_attempt_at,
                        created_at, updated_at, round_start, last_category, dead_at, delivered_at)
SELECT 'dlv_' || tail, 'evt_' || tail, 'ep_' || mod(i, 20) + 1, 'mch_' || mod(i, 20) + 1,
       CASE WHEN mod(i, 500) = 0 THEN 'dead' WHEN mod(i, 997) = 0 THEN 'pending' ELSE 'done' END,
       2, 1, ts, ts, ts, 0,
       CASE WHEN mod(i, 2000) = 0 THEN 'timeout' WHEN mod(i, 500) = 0 THEN 'server_error' ELSE 'success' END,
       CASE WHEN mod(i, 500) = 0 THEN ts + interval '28 hours' END,
       CASE WHEN mod(i, 500) <> 0 AND mod(i, 997) <> 0 THEN ts + interval '1 second' END
FROM seed;
INSERT INTO delivery_attempts (delivery_id, endpoint_id, number, started_at, duration_ms, status_code, category)
SELECT 'dlv_' || tail, 'ep_' || mod(i, 20) + 1, 1, ts, 5, 200, 'success' FROM seed;
INSERT INTO emails (id, merchant_id, event_id, template, recipients, context, dedupe_key, state, priority,
                    attempts, next_attempt_at, created_at, updated_at)
SELECT 'eml_' || tail, 'mch_' || mod(i, 20) + 1, 'evt_' || tail, 'payment_received', '[]', '{{}}',
       'pr:' || i, 'done', 2, 1, ts, ts, ts
FROM seed;
VACUUM ANALYZE;
"""


@pytest.fixture(scope="module")
def big_store(postgres):
    if postgres is None:
        pytest.skip("query plans are checked on PostgreSQL (TEST_DATABASE_URL)")
    name = postgres.create()
    store = Store(postgres.url_for(name))
    upgrade(postgres.url_for(name))
    # Autocommit: VACUUM (the visibility map, for index-only scans) runs outside a transaction.
    with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("SET statement_timeout = 0")
        for statement in SEED.split(";\n"):
            if statement.strip():
                conn.exec_driver_sql(statement)
    yield store
    store.dispose()
    postgres.drop(name)


def _seq_scans(plan: dict, limited: bool = False) -> list[str]:
    """Big tables read whole: a sequential scan, or a walk of a whole index with nothing to stop it.

    An index walk without a condition is fine under a LIMIT (newest first, keyset pages); without one it
    reads every entry, as slow as the table at scale.
    """
    found = []
    table = plan.get("Relation Name")
    if table in BIG_TABLES and plan.get("Node Type") == "Seq Scan":
        found.append(table)
    elif (table in BIG_TABLES and plan.get("Node Type") in ("Index Scan", "Index Only Scan")
          and "Index Cond" not in plan and not limited):
        found.append(f"{table} (whole index {plan.get('Index Name')})")
    for child in plan.get("Plans", []):
        found += _seq_scans(child, limited or plan.get("Node Type") == "Limit")
    return found


def _plan(value) -> dict:
    return (value if isinstance(value, list) else json.loads(value))[0]["Plan"]


def explain(store: Store, stmt) -> list[str]:
    sql = str(stmt.compile(store.engine, compile_kwargs={"literal_binds": True}))
    with store.engine.connect() as conn:
        plan = conn.execute(text(f"EXPLAIN (FORMAT JSON) {sql}")).scalar()
    return _seq_scans(_plan(plan))


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
    for who, scope in (("operator", Scope(None)), ("merchant", Scope("mch_3"))):
        for name, stmt in console.overview_statements("postgresql", scope, NOW).items():
            yield f"console overview, {who}: {name}", stmt
        yield f"console kinds of event, {who}", console.recent_types_statement(scope, NOW)
        yield f"console events, {who}", console.events_statement(scope, {}).order_by(Event.id.desc()).limit(51)
        yield f"console events by receipt, {who}", console.events_statement(scope, {"q": "R777"}).order_by(
            Event.id.desc()).limit(51)
        yield f"console events received since, {who}", console.events_statement(
            scope, {"since": NOW - dt.timedelta(hours=2)}).order_by(Event.id.desc()).limit(51)
        yield f"console deliveries, {who}", console.deliveries_statement(scope, {}).order_by(
            Delivery.id.desc()).limit(51)
        yield f"console deliveries waiting, {who}", console.deliveries_statement(
            scope, {"state": "pending"}).order_by(Delivery.id.desc()).limit(51)
        yield f"console deliveries of an event, {who}", console.deliveries_statement(
            scope, {"event": "evt_000000012345"}).order_by(Delivery.id.desc()).limit(51)


@pytest.mark.parametrize("name, stmt", list(hot_queries()), ids=[n for n, _ in hot_queries()])
def test_hot_query_uses_an_index(big_store, name, stmt):
    assert explain(big_store, stmt) == [], f"{name} scans a big table sequentially"


def test_the_check_sees_a_sequential_scan(big_store):
    unindexed = select(Event.id).where(Event.phone.like("%149")).limit(50)
    assert explain(big_store, unindexed) == ["events"]


# -- every read of the API and the console, as the pages make them ------------------------------

@pytest.fixture(scope="module")
def site(big_store, redis_server):
    """The webhook-service on the big store, with an admin API key, and console sessions (admin, merchant)."""
    url = big_store.engine.url.render_as_string(hide_password=False)
    app = create_app({"database_url": url, "redis_url": redis_server.url, "log_format": "text",
                      "console_cookie_secure": False})
    app.config["TESTING"] = True
    store = app.extensions["payhook.store"]
    _, admin_key = create_api_key(store, None, "plans")
    _, merchant_key = create_api_key(store, "mch_3", "plans")
    clients = {"api": app.test_client(), "merchant api": app.test_client()}
    for name, key in (("console", admin_key), ("merchant console", merchant_key)):
        client = app.test_client()
        page = client.get("/console/login").get_data(as_text=True)
        token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
        assert client.post("/console/login", data={"api_key": key, "csrf_token": token}).status_code == 302
        clients[name] = client
    with big_store.engine.connect() as conn:
        event_id, receipt = conn.exec_driver_sql(
            "SELECT id, receipt FROM events WHERE merchant_id = 'mch_3' ORDER BY id OFFSET 2000 LIMIT 1").one()
        delivery_id = conn.exec_driver_sql(f"SELECT id FROM deliveries WHERE event_id = '{event_id}'").scalar()
        dead_id = conn.exec_driver_sql("SELECT id FROM deliveries WHERE state = 'dead' ORDER BY id OFFSET 50 "
                                       "LIMIT 1").scalar()
        attempt_id = conn.exec_driver_sql("SELECT id FROM delivery_attempts WHERE endpoint_id = 'ep_3' "
                                          "ORDER BY id OFFSET 500 LIMIT 1").scalar()
    yield app, clients, {"api": {"Authorization": f"Bearer {admin_key}"},
                         "merchant api": {"Authorization": f"Bearer {merchant_key}"}}, {
        "event": event_id, "receipt": receipt, "delivery": delivery_id, "dead": dead_id,
        "attempt": attempt_id}
    store.dispose()


def pages():
    """``(client, path)`` for every list and detail read; ``{event}`` etc. are filled from the store."""
    week = "since=2026-03-01T00:00:00Z&until=2026-03-08T00:00:00Z"
    for path in ("/v1/dead-letters", "/v1/dead-letters?merchant_id=mch_3", "/v1/dead-letters?endpoint_id=ep_4",
                 "/v1/dead-letters?category=timeout", f"/v1/dead-letters?{week}", "/v1/dead-letters?after={dead}",
                 "/v1/deliveries/{delivery}", "/v1/deliveries/{dead}", "/v1/merchants", "/v1/merchants/mch_3",
                 "/v1/merchants/mch_3/endpoints", "/v1/endpoints/ep_3", "/v1/merchants/mch_3/sources"):
        yield "api", path
    # The events API (issue #21): every filter, detail, attempts and stats, for an operator and a merchant.
    events_api = ("/v1/events", "/v1/events?type=mpesa.account_balance", "/v1/events?status=unknown",
                  "/v1/events?provider=mpesa", "/v1/events?receipt={receipt}", "/v1/events?reference=ws_CO_777",
                  "/v1/events?bill_ref=ACC-1", "/v1/events?phone_suffix=4321",
                  "/v1/events?phone_suffix=254700007919", f"/v1/events?{week}",
                  f"/v1/events?{week}&status=failed", "/v1/events?delivery=dead", "/v1/events?delivery=failing",
                  "/v1/events?delivery=undelivered", "/v1/events?delivery=delivered",
                  "/v1/events?delivery=dead&type=mpesa.b2c", "/v1/events?after={event}", "/v1/events/{event}",
                  "/v1/events/{event}/deliveries", "/v1/deliveries/{delivery}/attempts",
                  "/v1/deliveries/{dead}/attempts", "/v1/endpoints/ep_3/attempts",
                  "/v1/endpoints/ep_3/attempts?outcome=failure", "/v1/endpoints/ep_3/attempts?after={attempt}",
                  "/v1/endpoints/ep_3/stats", "/v1/endpoints/ep_3/replays")
    for path in events_api + ("/v1/events?merchant_id=mch_3&type=mpesa.b2c",):
        yield "api", path
    for path in events_api:
        if "{dead}" not in path:
            yield "merchant api", path
    for path in ("/console/", "/console/events", "/console/events?type=mpesa.account_balance",
                 "/console/events?status=unknown", "/console/events?q={receipt}", "/console/events?q=ws_CO_777",
                 "/console/events?q={event}", "/console/events?phone=4321", "/console/events?phone=254700007919",
                 "/console/events?since=2026-03-01&until=2026-03-02",
                 "/console/events?since=2026-02-01&until=2026-02-08&status=failed",
                 "/console/events?merchant=mch_3&type=mpesa.b2c", "/console/events?after={event}",
                 "/console/events/{event}", "/console/deliveries", "/console/deliveries?state=dead",
                 "/console/deliveries?state=pending", "/console/deliveries?endpoint=ep_4",
                 "/console/deliveries?event={event}", "/console/deliveries/{delivery}", "/console/deliveries/{dead}",
                 "/console/dead-letters", "/console/dead-letters?merchant=mch_3&category=server_error&since=2026-03-01",
                 "/console/endpoints", "/console/endpoints/ep_3", "/console/callback-urls", "/console/audit"):
        yield "console", path
    for path in ("/console/", "/console/events", "/console/events?phone=4321", "/console/events?q={receipt}",
                 "/console/events?since=2026-03-01&until=2026-03-02", "/console/dead-letters",
                 "/console/deliveries", "/console/endpoints/ep_3", "/console/events/{event}"):
        yield "merchant console", path


def _indexes(plan: dict) -> set[str]:
    own = {plan["Index Name"]} if "Index Name" in plan else set()
    return own.union(*(_indexes(child) for child in plan.get("Plans", [])))


def plans(site, who: str, path: str, setting: str | None = None) -> list[tuple[str, dict]]:
    """``(statement, plan)`` of every SELECT the page at ``path`` runs (planned after ``setting``, if given)."""
    app, clients, headers, values = site
    statements = []

    def record(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith(("SELECT", "WITH")):
            statements.append((statement, parameters))

    engine = app.extensions["payhook.store"].engine
    sa_event.listen(engine, "before_cursor_execute", record)
    try:
        response = clients[who].get(path.format(**values), headers=headers.get(who, {}))
    finally:
        sa_event.remove(engine, "before_cursor_execute", record)
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    assert statements
    with engine.connect() as conn:
        if setting:
            conn.exec_driver_sql(setting)
        return [(statement, _plan(conn.exec_driver_sql(f"EXPLAIN (FORMAT JSON) {statement}", parameters).scalar()))
                for statement, parameters in statements]


@pytest.mark.parametrize("who, path", list(pages()), ids=[f"{w} {p}" for w, p in pages()])
def test_every_api_and_console_read_uses_an_index(site, who, path):
    for statement, plan in plans(site, who, path):
        assert _seq_scans(plan) == [], f"{path} scans a big table sequentially: {statement}"


@pytest.mark.parametrize("who", ["console", "merchant console"])
def test_a_phone_suffix_search_starts_from_the_phone_index(site, who):
    # Not a newest-first walk of the primary key betting on frequent matches: a rare suffix would read it all.
    # The planner takes that walk whenever it thinks a sort costly: with sorting discouraged, it still may not.
    [events] = [plan for statement, plan in plans(site, who, "/console/events?phone=8149", "SET LOCAL enable_sort = off")
                if "reverse(events.phone)" in statement]
    assert "ix_events_phone_reversed" in _indexes(events)


@pytest.mark.parametrize("who", ["api", "merchant api"])
def test_an_endpoints_recent_failures_come_from_the_failed_attempts_index(site, who):
    # Failures are a few percent of the attempts: filtering the endpoint's every attempt would read them all.
    [attempts] = [plan for statement, plan in plans(site, who, "/v1/endpoints/ep_3/attempts?outcome=failure")
                  if "FROM delivery_attempts" in statement]
    assert "ix_delivery_attempts_endpoint_failed" in _indexes(attempts)


@pytest.mark.parametrize("who", ["api", "merchant api"])
def test_events_with_a_dead_delivery_are_read_a_page_at_a_time(site, who):
    # Newest first from the dead deliveries' event_id index, stopping when the page is full.
    # (The other read of deliveries is the page's own, for each event's delivery_status.)
    [ids] = [plan for statement, plan in plans(site, who, "/v1/events?delivery=dead")
             if "FROM deliveries" in statement and "DISTINCT" in statement]
    assert _indexes(ids) & {"ix_deliveries_dead_event_id", "ix_deliveries_dead_merchant_id_event_id"}
    assert ids["Node Type"] == "Limit"


@pytest.mark.parametrize("who, path, index", [
    ("api", "/v1/events?type=mpesa.account_balance", "ix_events_type_id"),
    ("api", "/v1/events?status=unknown", "ix_events_status_id"),
    ("merchant api", "/v1/events?status=unknown", "ix_events_status_id"),
    ("console", "/console/events?type=mpesa.account_balance", "ix_events_type_id"),
    ("console", "/console/events?status=unknown", "ix_events_status_id"),
])
def test_a_rare_type_or_status_is_listed_from_its_own_index(site, who, path, index):
    # Not the primary key walked newest first, skipping every other event: at 1,000,000 events a page of
    # the 1 % status read 10,000 rows that way (make bench-store), and a rarer value reads more.
    assert any(index in _indexes(plan) for _, plan in plans(site, who, path))
