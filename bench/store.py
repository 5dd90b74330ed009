"""``make bench-store``: the store at scale, on PostgreSQL, on a stack of its own.

1. Ingest throughput on the empty store (wrk, as ``make bench`` measures it).
2. ``BENCH_STORE_EVENTS`` events (1,000,000 by default) over 120 days, with
   their deliveries, attempts and emails, bulk-loaded with ``COPY``
   (``bench.storegen`` makes the rows in another process), then ``VACUUM ANALYZE``.
3. Bytes on disk per event (tables, TOAST and indexes).
4. p50/p95 of every list and detail query the JSON API and the console make,
   through HTTP on keep-alive connections (client-measured), quarantined
   callbacks and replay jobs included (made in SQL after the load); then every
   statement each read runs EXPLAINed on the loaded store: none may read a big
   table whole.
5. Ingest throughput again on the full store, and its ratio to the empty one.
6. The retention purge with a policy that puts ~30 % of the events past
   retention, while callbacks keep arriving: rows per second, every answer
   checked, and what was removed checked against what the policy says.

Prints a table, writes ``var/bench/store.json``; the database is dropped at the
end, on Ctrl-C and on SIGTERM too.
"""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import http.client
import itertools
import json
import multiprocessing
import os
import platform
import re
import signal
import sys
import time
import urllib.parse
from collections.abc import Callable

import psycopg
from sqlalchemy import update
from sqlalchemy.engine import make_url

from payhook_shared import ids, retention, signing
from payhook_shared.store import Endpoint, Merchant, Store
from payhook_webhook.auth import create_api_key

from . import storegen
from .load import Sender, wrk
from .run import CONNECTIONS, ROUNDS, SECONDS, WEB_CONNECTIONS, WEB_WORKERS, _database_url, _median_run, _percentile
from .stack import ROOT, Proc, Stack

OUT = ROOT / "var" / "bench"
EVENTS = int(os.environ.get("BENCH_STORE_EVENTS", "1000000"))
REQUESTS = int(os.environ.get("BENCH_STORE_REQUESTS", "200"))
WARMUP = 10
DAYS = 120
CHUNK = 25_000
#: Retention for the purge: events older than 84 of the 120 days (~30 %) go; raw payloads of 4 more days are blanked.
PURGE_POLICY = retention.Policy(raw_payload_days=80, events_days=84)
PURGE_SENDER_RATE = 50.0
TARGETS = {"p95_ms": 50.0, "ingest_ratio": 0.8}
BIG_TABLES = ("events", "deliveries", "delivery_attempts", "emails")
#: Tables no read may scan whole (sequentially, or an index walked without a condition or LIMIT).
PLANNED_TABLES = (*BIG_TABLES, "quarantined_callbacks", "replays")
#: Quarantined callbacks (2 % of the events, one in ten still quarantined) and replay jobs per endpoint, over the 120 days.
QUARANTINED_SHARE = 0.02
REPLAYS_PER_ENDPOINT = 300
# Console sessions must work across gunicorn workers and over plain HTTP.
CONSOLE_ENV = {"CONSOLE_SECRET_KEY": "bench-store-" + os.urandom(8).hex(), "CONSOLE_COOKIE_SECURE": "false",
               "CONSOLE_LOGIN_ATTEMPTS": "1000", "RETENTION_INTERVAL": "0"}


def _libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# -- merchants, endpoints and keys ---------------------------------------------------------------

def _population(stack: Stack, store: Store) -> list[storegen.Merchant]:
    """Five merchants of unequal size; the stack's own merchant (the one wrk posts to) is the largest.

    Set up before the empty-store ingest, so both ingest runs do the same work per callback:
    two deliveries and a "payment received" email.
    """
    receiver = f"http://127.0.0.1:{stack.receiver_port}"
    shop = stack.merchant
    specs = [("Duka Kubwa", 0.25, "owner@duka.example", (0.01,)),
             ("Mama Mboga Online", 0.13, None, (0.01,)),
             ("Safari Tickets", 0.12, "ops@safari.example", (0.01, 0.12)),  # its second endpoint keeps failing
             ("Small Biz", 0.10, None, (0.02,))]
    population = []
    with store.write() as session:
        session.execute(update(Merchant).where(Merchant.id == shop.id).values(notification_email="shop@bench.example"))
        second = Endpoint(id=ids.new_id("ep"), merchant_id=shop.id, url=f"{receiver}/erp",
                          secret=signing.generate_secret())
        session.add(second)
        first = session.query(Endpoint.id).filter(Endpoint.merchant_id == shop.id, Endpoint.id != second.id).scalar()
        population.append(storegen.Merchant(shop.id, shop.name, 0.40, (storegen.Endpoint(first, 0.01),
                                                                       storegen.Endpoint(second.id, 0.01)),
                                            "shop@bench.example"))
        for name, share, email, rates in specs:
            merchant = Merchant(id=ids.new_id("mch"), name=name, notification_email=email,
                                callback_token=ids.new_token(), settings={})
            session.add(merchant)
            session.flush()
            endpoints = []
            for n, rate in enumerate(rates):
                endpoint = Endpoint(id=ids.new_id("ep"), merchant_id=merchant.id, url=f"{receiver}/m{n}",
                                    secret=signing.generate_secret())
                session.add(endpoint)
                endpoints.append(storegen.Endpoint(endpoint.id, rate))
            population.append(storegen.Merchant(merchant.id, name, share, tuple(endpoints), email))
    return population


# -- bulk load -----------------------------------------------------------------------------------

def load(url: str, population: list[storegen.Merchant], events: int, now: float) -> dict:
    """COPY ``events`` events (and their rows) in; the rows are made in another process meanwhile."""
    start = now - DAYS * 86400
    end = now - 120
    span = (end - start) / max(events, 1)
    specs = [(population, start + first * span, start + min(first + CHUNK, events) * span,
              min(CHUNK, events - first), now, 13 + first) for first in range(0, events, CHUNK)]
    totals = {"events": 0, "deliveries": 0, "attempts": 0, "emails": 0,
              "delivery_states": {"done": 0, "dead": 0, "pending": 0}}
    started = time.monotonic()
    copy_seconds = 0.0
    # spawn: the child needs only bench.storegen, not a copy of this process and its threads.
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool, \
            psycopg.connect(_libpq(url)) as conn:
        # The rows are consistent by construction: skip the foreign-key triggers, and do not wait for fsync.
        conn.execute("SET session_replication_role = replica")
        conn.execute("SET synchronous_commit = off")
        conn.execute("SET statement_timeout = 0")
        pending = [pool.submit(storegen.chunk, *spec) for spec in specs[:2]]
        for index in range(len(specs)):
            chunk = pending.pop(0).result()
            if index + 2 < len(specs):
                pending.append(pool.submit(storegen.chunk, *specs[index + 2]))
            copy_started = time.monotonic()
            with conn.cursor() as cur:
                for (table, columns), text in zip(storegen.TABLES, chunk.texts):
                    if text:
                        with cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                            copy.write(text)
            conn.commit()
            copy_seconds += time.monotonic() - copy_started
            for key in ("events", "deliveries", "attempts", "emails"):
                totals[key] += getattr(chunk, key)
            for state, n in chunk.states.items():
                totals["delivery_states"][state] += n
            if index % 8 == 7 or index == len(specs) - 1:
                _log(f"  loaded {totals['events']:,} events ({time.monotonic() - started:.0f} s)")
    totals["seconds"] = round(time.monotonic() - started, 1)
    totals["copy_seconds"] = round(copy_seconds, 1)
    rows = totals["events"] + totals["deliveries"] + totals["attempts"] + totals["emails"]
    totals["rows_per_s"] = round(rows / max(totals["seconds"], 1e-6))
    vacuum_started = time.monotonic()
    with psycopg.connect(_libpq(url), autocommit=True) as conn:
        conn.execute("SET statement_timeout = 0")
        # Freshly loaded pages: set hint bits and the visibility map (index-only scans), and collect statistics.
        conn.execute(f"VACUUM (ANALYZE) {', '.join(BIG_TABLES)}")
    totals["vacuum_analyze_seconds"] = round(time.monotonic() - vacuum_started, 1)
    return totals


def sizes(url: str, events: int) -> dict:
    """Bytes on disk per table (heap, TOAST, indexes) and per event."""
    out: dict = {"tables": {}}
    with psycopg.connect(_libpq(url)) as conn:
        for table in BIG_TABLES:
            total, heap, indexes = conn.execute(
                "SELECT pg_total_relation_size(%s), pg_table_size(%s), pg_indexes_size(%s)",
                (table, table, table)).fetchone()
            rows = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            out["tables"][table] = {"rows": rows, "total_bytes": total, "table_bytes": heap, "index_bytes": indexes}
        out["indexes"] = dict(conn.execute(
            "SELECT indexrelname, pg_relation_size(indexrelid) FROM pg_stat_user_indexes "
            "WHERE relname = ANY(%s) ORDER BY 2 DESC", (list(BIG_TABLES),)).fetchall())
        out["settings"] = dict(conn.execute(
            "SELECT name, setting || coalesce(unit, '') FROM pg_settings WHERE name IN "
            "('shared_buffers', 'work_mem', 'effective_cache_size', 'random_page_cost', 'server_version')"
        ).fetchall())
    events = out["tables"]["events"]["rows"] or events
    core = sum(out["tables"][t]["total_bytes"] for t in ("events", "deliveries", "delivery_attempts"))
    out["events"] = events
    out["bytes_per_event"] = round(core / events)
    out["bytes_per_event_with_emails"] = round((core + out["tables"]["emails"]["total_bytes"]) / events)
    return out


def side_tables(url: str, population: list[storegen.Merchant], events: int, now: float) -> dict:
    """Quarantined callbacks and replay jobs spread over the ``DAYS`` days, for the quarantine and replay reads.

    Made in SQL (``generate_series``): ids start with the time received as ``ids.new_id`` makes them,
    merchants and endpoints take turns; then ``ANALYZE``.
    """
    start_ms = int((now - DAYS * 86400) * 1000)
    span_ms = DAYS * 86400 * 1000
    merchants = [m.id for m in population]
    endpoints = [(m.id, e.id) for m in population for e in m.endpoints]
    quarantined = max(int(events * QUARANTINED_SHARE), 100)
    replays = REPLAYS_PER_ENDPOINT * len(endpoints)
    body = json.dumps({"Body": {"stkCallback": {"MerchantRequestID": "29115-34620561-1", "ResultCode": "zero"}}})
    with psycopg.connect(_libpq(url)) as conn:
        conn.execute(
            """INSERT INTO quarantined_callbacks (id, merchant_id, provider, kind, content_type, headers, body, reason,
                   error, error_fields, state, attempts, received_at, resolved_at)
               SELECT 'qcb_' || lpad(to_hex(t), 12, '0') || substr(md5(i::text), 1, 16), (%(m)s::text[])[1 + i %% %(nm)s],
                      'mpesa', 'stk', 'application/json', '{"Content-Type": "application/json"}', convert_to(%(body)s, 'UTF8'),
                      'schema', 'Body.stkCallback.ResultCode: Not a valid integer.',
                      '{"Body": {"stkCallback": {"ResultCode": ["Not a valid integer."]}}}',
                      CASE WHEN i %% 10 = 0 THEN 'quarantined' ELSE 'resolved' END, CASE WHEN i %% 10 = 0 THEN 0 ELSE 1 END,
                      to_timestamp(t / 1000.0), CASE WHEN i %% 10 = 0 THEN NULL ELSE to_timestamp(t / 1000.0 + 3600) END
               FROM generate_series(1, %(n)s) AS i, LATERAL (SELECT %(start)s + i::bigint * %(span)s / %(n)s AS t) AS at""",
            {"m": merchants, "nm": len(merchants), "body": body, "n": quarantined, "start": start_ms, "span": span_ms})
        conn.execute(
            """INSERT INTO replays (id, merchant_id, endpoint_id, since, until, only_failed, requested_by, scanned,
                   created, revived, skipped, finished_at, state, priority, attempts, next_attempt_at, created_at,
                   updated_at)
               SELECT 'rpl_' || lpad(to_hex(t), 12, '0') || substr(md5(i::text), 1, 16), (%(m)s::text[])[1 + i %% %(ne)s],
                      (%(e)s::text[])[1 + i %% %(ne)s], to_timestamp(t / 1000.0 - 86400), to_timestamp(t / 1000.0),
                      i %% 2 = 0, 'key_bench', 2000, 40, 20, 1960, to_timestamp(t / 1000.0 + 60), 'done', 3, 1,
                      to_timestamp(t / 1000.0), to_timestamp(t / 1000.0), to_timestamp(t / 1000.0 + 60)
               FROM generate_series(1, %(n)s) AS i, LATERAL (SELECT %(start)s + i::bigint * %(span)s / %(n)s AS t) AS at""",
            {"m": [m for m, _ in endpoints], "e": [e for _, e in endpoints], "ne": len(endpoints), "n": replays,
             "start": start_ms, "span": span_ms})
        conn.execute("ANALYZE quarantined_callbacks")
        conn.execute("ANALYZE replays")
    return {"quarantined_callbacks": quarantined, "replays": replays}


# -- queries through HTTP ------------------------------------------------------------------------

class Client:
    """One keep-alive HTTP connection, with an API key or a console session cookie."""

    def __init__(self, port: int, *, api_key: str | None = None):
        self.port = port
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def get(self, path: str) -> tuple[int, bytes, float]:
        """``(status, body, seconds)`` of one GET."""
        started = time.perf_counter()
        try:
            self.conn.request("GET", path, headers=self.headers)
            response = self.conn.getresponse()
        except (OSError, http.client.HTTPException):
            # The server closed the kept-alive connection: open a new one and count the time.
            self.conn.close()
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            self.conn.request("GET", path, headers=self.headers)
            response = self.conn.getresponse()
        body = response.read()
        return response.status, body, time.perf_counter() - started

    def sign_in(self, api_key: str) -> "Client":
        """A console session for ``api_key`` (the sign-in form with its CSRF token)."""
        self.conn.request("GET", "/console/login")
        response = self.conn.getresponse()
        cookie = response.getheader("Set-Cookie", "").split(";", 1)[0]
        token = re.search(rb'name="csrf_token" value="([^"]+)"', response.read()).group(1).decode()
        body = urllib.parse.urlencode({"api_key": api_key, "csrf_token": token})
        self.conn.request("POST", "/console/login", body, {
            "Cookie": cookie, "Content-Type": "application/x-www-form-urlencoded"})
        response = self.conn.getresponse()
        response.read()
        if response.status != 302:
            raise RuntimeError(f"console sign-in answered {response.status}")
        self.headers = {"Cookie": response.getheader("Set-Cookie", cookie).split(";", 1)[0]}
        return self


def _samples(url: str, population: list[storegen.Merchant]) -> dict:
    """Real ids and values from the loaded store for the queries to ask about, spread over its 120 days."""
    with psycopg.connect(_libpq(url)) as conn:
        def column(sql: str, *args) -> list:
            return [row[0] for row in conn.execute(sql, args).fetchall()]
        sample = "TABLESAMPLE BERNOULLI (1) REPEATABLE (7)"
        events = column(f"SELECT id FROM events {sample} LIMIT 200")
        receipts = column(f"SELECT receipt FROM events {sample} WHERE receipt IS NOT NULL LIMIT 200")
        references = column(f"SELECT reference FROM events {sample} WHERE reference IS NOT NULL LIMIT 200")
        provider_keys = column(f"SELECT provider_key FROM events {sample} WHERE provider_key IS NOT NULL LIMIT 200")
        bill_refs = column(f"SELECT reference FROM events {sample} WHERE type LIKE 'mpesa.c2b.%%' "
                           "AND reference IS NOT NULL LIMIT 200")
        phones = column(f"SELECT phone FROM events {sample} WHERE phone IS NOT NULL LIMIT 200")
        done = column(f"SELECT id FROM deliveries {sample} WHERE state = 'done' LIMIT 200")
        dead = column("SELECT id FROM deliveries WHERE state = 'dead' ORDER BY md5(id) LIMIT 200")
        quarantined = column(f"SELECT id FROM quarantined_callbacks {sample} LIMIT 200")
        replays = column("SELECT id FROM replays ORDER BY md5(id) LIMIT 200")
        middle_quarantined = column("SELECT id FROM quarantined_callbacks ORDER BY id "
                                    "OFFSET (SELECT count(*) / 2 FROM quarantined_callbacks) LIMIT 1")
        middle_event = column("SELECT id FROM events ORDER BY id OFFSET (SELECT count(*) / 2 FROM events) LIMIT 1")
        middle_dead = column("SELECT id FROM deliveries WHERE state = 'dead' ORDER BY id "
                             "OFFSET (SELECT count(*) / 2 FROM deliveries WHERE state = 'dead') LIMIT 1")
    troubled = next(e.id for m in population for e in m.endpoints if e.dead_rate > 0.05)
    busy = population[0].endpoints[0].id
    return {"events": events, "receipts": receipts, "references": references, "phones": phones,
            "provider_keys": provider_keys, "bill_refs": bill_refs or ["none"], "busy_endpoint": busy,
            "done": done, "dead": dead, "middle_event": middle_event[0] if middle_event else "",
            "middle_dead": middle_dead[0] if middle_dead else "", "troubled_endpoint": troubled,
            "big": population[0].id, "small": population[-1].id, "quarantined": quarantined or ["none"],
            "replays": replays or ["none"], "middle_quarantined": middle_quarantined[0] if middle_quarantined else ""}


def _day(days_ago: int, now: dt.datetime) -> str:
    return (now - dt.timedelta(days=days_ago)).strftime("%Y-%m-%d")


def queries(s: dict, now: dt.datetime) -> list[tuple[str, str, list[str]]]:
    """``(client, name, paths)`` for every list and detail read the API and the console make; paths cycle."""
    q = urllib.parse.quote
    a60, a59 = _day(60, now), _day(59, now)
    a67 = _day(67, now)
    hour_ago = (now - dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")
    api = [
        ("dead letters", ["/v1/dead-letters"]),
        ("dead letters of a merchant", [f"/v1/dead-letters?merchant_id={s['big']}"]),
        ("dead letters of an endpoint", [f"/v1/dead-letters?endpoint_id={s['troubled_endpoint']}"]),
        ("dead letters by category", ["/v1/dead-letters?category=timeout"]),
        ("dead letters, a week 60 days ago", [f"/v1/dead-letters?since={_day(67, now)}T00:00:00Z"
                                              f"&until={a60}T00:00:00Z"]),
        ("dead letters, page in the middle", [f"/v1/dead-letters?after={s['middle_dead']}"]),
        ("delivery with attempts (done)", [f"/v1/deliveries/{d}" for d in s["done"]]),
        ("delivery with attempts (dead, 8)", [f"/v1/deliveries/{d}" for d in s["dead"]]),
        ("merchants", ["/v1/merchants"]),
        ("merchant", [f"/v1/merchants/{s['big']}"]),
        ("merchant's endpoints", [f"/v1/merchants/{s['big']}/endpoints"]),
        ("endpoint", [f"/v1/endpoints/{s['troubled_endpoint']}"]),
        ("merchant's sources", [f"/v1/merchants/{s['big']}/sources"]),
    ]
    # The events API: every filter, an event with its deliveries and attempts, an endpoint's attempts and stats.
    events_api = [
        ("events", ["/v1/events"]),
        ("events by type (2 %)", ["/v1/events?type=mpesa.account_balance"]),
        ("events by status failed", ["/v1/events?status=failed"]),
        ("events by provider", ["/v1/events?provider=stripe"]),
        ("events by receipt", [f"/v1/events?receipt={q(r)}" for r in s["receipts"]]),
        ("events by reference (provider key)", [f"/v1/events?reference={q(r)}" for r in s["provider_keys"]]),
        ("events by bill_ref", [f"/v1/events?bill_ref={q(r)}" for r in s["bill_refs"]]),
        ("events by phone suffix (4 digits)", [f"/v1/events?phone_suffix={p[-4:]}" for p in s["phones"]]),
        ("events, a week 60 days ago", [f"/v1/events?since={a67}T00:00:00Z&until={a60}T00:00:00Z"]),
        ("events, delivered", ["/v1/events?delivery=delivered"]),
        ("events, failing", ["/v1/events?delivery=failing"]),
        ("events, dead", ["/v1/events?delivery=dead"]),
        ("events, undelivered", ["/v1/events?delivery=undelivered"]),
        ("events, page in the middle", [f"/v1/events?after={s['middle_event']}"]),
        ("event detail", [f"/v1/events/{e}" for e in s["events"]]),
        ("event's deliveries", [f"/v1/events/{e}/deliveries" for e in s["events"]]),
        ("delivery's attempts (dead, 8)", [f"/v1/deliveries/{d}/attempts" for d in s["dead"]]),
        ("endpoint's attempts", [f"/v1/endpoints/{s['troubled_endpoint']}/attempts"]),
        ("endpoint's failed attempts", [f"/v1/endpoints/{s['troubled_endpoint']}/attempts?outcome=failure"]),
        ("endpoint stats (busiest endpoint)", [f"/v1/endpoints/{s['busy_endpoint']}/stats"]),
        ("endpoint stats (troubled endpoint)", [f"/v1/endpoints/{s['troubled_endpoint']}/stats"]),
        ("event types (catalog)", ["/v1/event-types"]),
        ("endpoint's replays", [f"/v1/endpoints/{s['busy_endpoint']}/replays"]),
        ("replay", [f"/v1/replays/{r}" for r in s["replays"]]),
        ("quarantine", ["/v1/quarantine"]),
        ("quarantine, still quarantined", ["/v1/quarantine?state=quarantined"]),
        ("quarantine of a merchant, still quarantined", [f"/v1/quarantine?merchant_id={s['small']}"
                                                         "&state=quarantined"]),
        ("quarantine, page in the middle", [f"/v1/quarantine?after={s['middle_quarantined']}"]),
        ("quarantined callback", [f"/v1/quarantine/{c}" for c in s["quarantined"]]),
    ]
    merchant_api = [
        ("events", ["/v1/events"]),
        ("events by reference (provider key)", [f"/v1/events?reference={q(r)}" for r in s["provider_keys"]]),
        ("events by phone suffix (4 digits)", [f"/v1/events?phone_suffix={p[-4:]}" for p in s["phones"]]),
        ("events, dead", ["/v1/events?delivery=dead"]),
        ("events, failing", ["/v1/events?delivery=failing"]),
        ("endpoint stats (busiest endpoint)", [f"/v1/endpoints/{s['busy_endpoint']}/stats"]),
        ("endpoint's replays", [f"/v1/endpoints/{s['busy_endpoint']}/replays"]),
        ("quarantine", ["/v1/quarantine"]),
        ("quarantine, still quarantined", ["/v1/quarantine?state=quarantined"]),
    ]
    api += events_api
    console = [
        ("overview", ["/console/"]),
        ("events", ["/console/events"]),
        ("events by type (10 %)", ["/console/events?type=mpesa.b2c"]),
        ("events by type (2 %)", ["/console/events?type=mpesa.account_balance"]),
        ("events by status failed", ["/console/events?status=failed"]),
        ("events by status unknown (1 %)", ["/console/events?status=unknown"]),
        ("events by receipt", [f"/console/events?q={q(r)}" for r in s["receipts"]]),
        ("events by reference", [f"/console/events?q={q(r)}" for r in s["references"]]),
        ("events by id", [f"/console/events?q={e}" for e in s["events"]]),
        ("events by phone suffix (4 digits)", [f"/console/events?phone={p[-4:]}" for p in s["phones"]]),
        ("events by phone (whole number)", [f"/console/events?phone={p}" for p in s["phones"]]),
        ("events, last hour", [f"/console/events?since={q(hour_ago)}"]),
        ("events, one day 60 days ago", [f"/console/events?since={a60}&until={a59}"]),
        ("events, a week 60 days ago, failed", [f"/console/events?since={a67}&until={a60}&status=failed"]),
        ("events of a small merchant", [f"/console/events?merchant={s['small']}"]),
        ("events of a merchant by type and status", [f"/console/events?merchant={s['big']}&type=mpesa.stk_push"
                                                     f"&status=failed"]),
        ("events, page in the middle", [f"/console/events?after={s['middle_event']}"]),
        ("event detail", [f"/console/events/{e}" for e in s["events"]]),
        ("deliveries", ["/console/deliveries"]),
        ("deliveries, dead", ["/console/deliveries?state=dead"]),
        ("deliveries, pending", ["/console/deliveries?state=pending"]),
        ("deliveries of an endpoint", [f"/console/deliveries?endpoint={s['troubled_endpoint']}"]),
        ("deliveries of an event", [f"/console/deliveries?event={e}" for e in s["events"]]),
        ("delivery detail (done)", [f"/console/deliveries/{d}" for d in s["done"]]),
        ("delivery detail (dead, 8 attempts)", [f"/console/deliveries/{d}" for d in s["dead"]]),
        ("dead letters", ["/console/dead-letters"]),
        ("dead letters, filtered", [f"/console/dead-letters?merchant={s['big']}&category=server_error"
                                    f"&since={a67}&until={a60}"]),
        ("endpoints", ["/console/endpoints"]),
        ("callback URLs", ["/console/callback-urls"]),
        ("audit log", ["/console/audit"]),
        ("quarantine", ["/console/quarantine"]),
        ("quarantine, resolved", ["/console/quarantine?state=resolved"]),
        ("quarantined callback", [f"/console/quarantine/{c}" for c in s["quarantined"]]),
    ]
    merchant = [
        ("overview", ["/console/"]),
        ("events", ["/console/events"]),
        ("events by phone suffix (4 digits)", [f"/console/events?phone={p[-4:]}" for p in s["phones"]]),
        ("events by receipt", [f"/console/events?q={q(r)}" for r in s["receipts"]]),
        ("dead letters", ["/console/dead-letters"]),
        ("deliveries", ["/console/deliveries"]),
    ]
    return ([("api", n, p) for n, p in api] + [("merchant api", n, p) for n, p in merchant_api]
            + [("console", n, p) for n, p in console] + [("merchant console", n, p) for n, p in merchant])


def measure(clients: dict[str, Client], plan: list[tuple[str, str, list[str]]], requests: int,
            web: Proc, progress: Callable[[str], None]) -> list[dict]:
    """``requests`` timed GETs per query after ``WARMUP`` untimed ones; p50, p95, max and any non-200.

    Also the web processes' CPU per request, which says what a page costs whatever else the machine runs.
    """
    results = []
    for who, name, paths in plan:
        client = clients[who]
        cycle = itertools.cycle(paths)
        for _ in range(WARMUP):
            client.get(next(cycle))
        times, bad = [], []
        cpu_before = web.cpu_seconds()
        for _ in range(requests):
            path = next(cycle)
            status, body, seconds = client.get(path)
            times.append(seconds * 1000)
            if status != 200:
                bad.append((path, status, body[:200].decode(errors="replace")))
        cpu_ms = (web.cpu_seconds() - cpu_before) * 1000 / requests
        row = {"client": who, "query": name, "example": paths[0], "requests": requests,
               "p50_ms": round(_percentile(times, 0.5), 1), "p95_ms": round(_percentile(times, 0.95), 1),
               "max_ms": round(max(times), 1), "web_cpu_ms": round(cpu_ms, 1), "non_200": len(bad),
               "first_non_200": bad[0] if bad else None}
        row["ok"] = row["p95_ms"] < TARGETS["p95_ms"] and not bad
        results.append(row)
        progress(f"  {who:<16} {name:<42} p50 {row['p50_ms']:>6.1f} ms  p95 {row['p95_ms']:>6.1f} ms  "
                 f"web CPU {row['web_cpu_ms']:>5.1f} ms"
                 f"{'' if row['ok'] else '  MISS' + (f' ({len(bad)} non-200)' if bad else '')}")
    return results


def _whole_reads(plan: dict, limited: bool = False) -> list[str]:
    """Tables a plan reads whole: a sequential scan, or an index walked without a condition or a LIMIT."""
    found = []
    table = plan.get("Relation Name")
    if table in PLANNED_TABLES and plan.get("Node Type") == "Seq Scan":
        found.append(table)
    elif (table in PLANNED_TABLES and plan.get("Node Type") in ("Index Scan", "Index Only Scan")
          and "Index Cond" not in plan and not limited):
        found.append(f"{table} (whole index {plan.get('Index Name')})")
    for child in plan.get("Plans", []):
        found += _whole_reads(child, limited or plan.get("Node Type") == "Limit")
    return found


def explain_all(stack: Stack, keys: dict[str, str], plan: list[tuple[str, str, list[str]]],
                results: list[dict]) -> None:
    """EXPLAIN ANALYZE every SELECT each read runs, on the loaded store; each row gets ``whole_reads`` and ``db_ms``.

    The pages are requested from an app made here on the stack's database (the statements are caught
    where they reach the driver, with their parameters), as ``tests/shared/test_query_plans.py`` does on
    100,000 events.
    """
    from sqlalchemy import event as sa_event

    from payhook_webhook.app import create_app

    app = create_app({"database_url": stack.db.url, "redis_url": stack.redis_url, "log_format": "json",
                      "log_level": "WARNING", "console_cookie_secure": False})
    clients, headers = {}, {}
    for who, key in keys.items():
        client = app.test_client()
        if who.endswith("console"):
            page = client.get("/console/login").get_data(as_text=True)
            token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
            if client.post("/console/login", data={"api_key": key, "csrf_token": token}).status_code != 302:
                raise RuntimeError("console sign-in failed")
        else:
            headers[who] = {"Authorization": f"Bearer {key}"}
        clients[who] = client
    engine = app.extensions["payhook.store"].engine
    for (who, _, paths), row in zip(plan, results):
        statements: list[tuple[str, object]] = []

        def record(conn, cursor, statement, parameters, context, executemany):
            if statement.lstrip().upper().startswith(("SELECT", "WITH")):
                statements.append((statement, parameters))

        sa_event.listen(engine, "before_cursor_execute", record)
        try:
            clients[who].get(paths[0], headers=headers.get(who, {}))
        finally:
            sa_event.remove(engine, "before_cursor_execute", record)
        found: list[str] = []
        db_ms = 0.0
        with engine.connect() as conn:
            for statement, parameters in statements:
                value = conn.exec_driver_sql(f"EXPLAIN (ANALYZE, FORMAT JSON) {statement}", parameters).scalar()
                explained = (value if isinstance(value, list) else json.loads(value))[0]
                found += _whole_reads(explained["Plan"])
                db_ms += explained["Planning Time"] + explained["Execution Time"]
        row["statements"] = len(statements)
        row["whole_reads"] = found
        # The server's own time for the read's statements: what the indexes decide, whatever the web CPU costs.
        row["db_ms"] = round(db_ms, 1)
        row["ok"] = row["ok"] and not found
    app.extensions["payhook.store"].dispose()


def _ingest(stack: Stack, prefix: str, seconds: float) -> dict:
    """wrk's unique STK callbacks for ``seconds``, as ``make bench`` runs them, and the web processes' CPU per callback."""
    cpu_before = stack.procs["web"].cpu_seconds()
    result = vars(wrk(stack.base_url, path=stack.callback_path("stk"), seconds=seconds, connections=CONNECTIONS,
                      prefix=prefix))
    # CPU per callback says what the code costs whatever else the shared machine runs meanwhile.
    result["web_cpu_ms_per_request"] = round(
        (stack.procs["web"].cpu_seconds() - cpu_before) * 1000 / max(result["requests"], 1), 2)
    return result


def ingest_full_vs_empty(full: Stack, empty: Stack) -> dict:
    """Ingest on the full store and on an empty twin, in turns, ROUNDS times each; the medians compared.

    The twin is a second stack whose database has the same merchants and no events, started with the
    first. Taking turns matters: run minutes apart, the two figures differed by as much as this shared
    machine's speed drifts (docs/performance.md, Method), which is more than the store's size does.
    Each web service is warmed up first: a just-started one runs its first seconds slower.
    """
    for stack, name in ((empty, "empty"), (full, "full")):
        wrk(stack.base_url, path=stack.callback_path("stk"), seconds=3, connections=CONNECTIONS, prefix=f"{name}-warm")
    rounds: dict[str, list[dict]] = {"empty": [], "full": []}
    for n in range(ROUNDS):
        rounds["empty"].append(_ingest(empty, f"empty{n}", SECONDS / ROUNDS))
        rounds["full"].append(_ingest(full, f"full{n}", SECONDS / ROUNDS))
    result = {name: _median_run(runs) for name, runs in rounds.items()}
    result["ratio"] = result["full"]["rps"] / max(result["empty"]["rps"], 1e-6)
    result["rounds_ratio"] = [round(f["rps"] / max(e["rps"], 1e-6), 3)
                              for e, f in zip(rounds["empty"], rounds["full"])]
    return result


# -- purge ---------------------------------------------------------------------------------------

def _counts(url: str, cutoff: dt.datetime, before: dt.datetime) -> dict:
    """What the policy says about the store: old events that must go and those that must stay."""
    owed = ("EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = e.id AND d.state <> 'done') OR "
            "EXISTS (SELECT 1 FROM emails m WHERE m.event_id = e.id AND m.state NOT IN ('done', 'dead'))")
    with psycopg.connect(_libpq(url)) as conn:
        conn.execute("SET statement_timeout = 0")
        row = conn.execute(
            f"SELECT count(*) FILTER (WHERE NOT ({owed})), count(*) FILTER (WHERE {owed}) "
            "FROM events e WHERE e.received_at < %s", (cutoff,)).fetchone()
        unfinished = conn.execute(
            "SELECT count(*) FILTER (WHERE state IN ('pending', 'sending')), count(*) FILTER (WHERE state = 'dead') "
            "FROM deliveries WHERE created_at < %s", (before,)).fetchone()
    return {"old_finished_events": row[0], "old_owed_events": row[1], "pending_deliveries": unfinished[0],
            "dead_deliveries": unfinished[1]}


def purge_under_ingest(stack: Stack, store: Store, now: dt.datetime) -> dict:
    """Run the retention purge while a steady sender posts callbacks; check both."""
    cutoff = now - dt.timedelta(days=PURGE_POLICY.events_days)
    before = dt.datetime.now(dt.timezone.utc)
    expected = _counts(stack.db.url, cutoff, before)
    _log(f"  past retention: {expected['old_finished_events']:,} events to purge, "
         f"{expected['old_owed_events']:,} old ones still owed")
    sender = Sender(stack.web_port, stack.callback_path("stk"), rate=PURGE_SENDER_RATE, prefix="purge",
                    threads=4).start()
    started = time.monotonic()
    try:
        purged = retention.purge(store, PURGE_POLICY, now=now)
    finally:
        seconds = time.monotonic() - started
        sender.stop()
    after = _counts(stack.db.url, cutoff, before)
    rows = purged.events + purged.deliveries + purged.attempts + purged.emails
    refused = [s for s in sender.sent if not s.accepted]
    exact = (purged.events == expected["old_finished_events"] and after["old_finished_events"] == 0
             and after["old_owed_events"] == expected["old_owed_events"]
             and after["pending_deliveries"] == expected["pending_deliveries"]
             and after["dead_deliveries"] == expected["dead_deliveries"])
    return {"policy": {"events_days": PURGE_POLICY.events_days, "raw_payload_days": PURGE_POLICY.raw_payload_days},
            "seconds": round(seconds, 1), "purged": vars(purged), "rows": rows,
            "rows_per_s": round(rows / max(seconds, 1e-6)), "events_per_s": round(purged.events / max(seconds, 1e-6)),
            "expected": expected, "after": after, "exact": exact,
            "ingest_during": {"sent": len(sender.sent), "accepted": len(sender.accepted), "refused": len(refused),
                              "statuses": sorted({str(s.status) for s in refused})}}


# -- report --------------------------------------------------------------------------------------

def _non_200(row: dict) -> str:
    return f" ({row['non_200']} answers not 200)" if row["non_200"] else ""


def _table(r: dict) -> None:
    ok = {True: "ok", False: "MISS"}
    print()
    s = r["sizes"]
    print(f"machine: {r['machine']['cpus']} CPUs, load average {r['machine']['load_average_at_start'][0]:.1f} "
          f"at start, {r['machine']['load_average_at_end'][0]:.1f} at end; PostgreSQL "
          f"{s['settings'].get('server_version')}, shared_buffers {s['settings'].get('shared_buffers')}")
    ld = r["load"]
    print(f"loaded: {ld['events']:,} events, {ld['deliveries']:,} deliveries ({ld['delivery_states']}), "
          f"{ld['attempts']:,} attempts, {ld['emails']:,} emails in {ld['seconds']} s ({ld['rows_per_s']:,} rows/s), "
          f"VACUUM ANALYZE {ld['vacuum_analyze_seconds']} s")
    print(f"bytes per event: {s['bytes_per_event']:,} (events + deliveries + attempts with their indexes), "
          f"{s['bytes_per_event_with_emails']:,} with emails")
    for table, t in s["tables"].items():
        print(f"  {table:<18} {t['rows']:>10,} rows  {t['total_bytes'] / 2**20:>8.1f} MiB "
              f"(table {t['table_bytes'] / 2**20:.1f}, indexes {t['index_bytes'] / 2**20:.1f})")
    print(f"\n{'client':<16} {'query':<44} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8} {'CPU ms':>7} {'DB ms':>6} "
          f"{'plan':<6} target p95 < 50 ms, indexed")
    for q in r["queries"]:
        print(f"{q['client']:<16} {q['query']:<44} {q['p50_ms']:>8.1f} {q['p95_ms']:>8.1f} {q['max_ms']:>8.1f} "
              f"{q['web_cpu_ms']:>7.1f} {q['db_ms']:>6.1f} {'WHOLE' if q['whole_reads'] else 'index':<6} "
              f"{ok[q['ok']]}{_non_200(q)}{' (' + ', '.join(q['whole_reads']) + ')' if q['whole_reads'] else ''}")
    side = r["side_tables"]
    print(f"(with {side['quarantined_callbacks']:,} quarantined callbacks and {side['replays']:,} replays; "
          f"{sum(q['statements'] for q in r['queries'])} statements EXPLAINed)")
    i = r["ingest"]
    print()
    for phase in ("empty", "full"):
        run = i[phase]
        print(f"ingest, {phase} store (median round of {run['rounds_rps']}): {run['rps']:.0f} req/s, p50 "
              f"{run['p50_ms']:.0f} ms, p99 {run['p99_ms']:.0f} ms, non-2xx {run['non_2xx']}, errors {run['errors']}, "
              f"{run['web_cpu_ms_per_request']} ms web CPU per callback")
    print(f"ingest full / empty: {i['ratio']:.0%} (in turns; rounds {', '.join(f'{x:.0%}' for x in i['rounds_ratio'])})"
          f"  {ok[r['verdict']['ingest_ratio']]} (>= 80 %)")
    p = r["purge"]
    print(f"purge: {p['purged']['events']:,} events, {p['purged']['deliveries']:,} deliveries, "
          f"{p['purged']['attempts']:,} attempts, {p['purged']['emails']:,} emails, "
          f"{p['purged']['raw_payloads']:,} raw payloads blanked in {p['seconds']} s: {p['rows_per_s']:,} rows/s "
          f"({p['events_per_s']:,} events/s); exactly what the policy says: {'yes' if p['exact'] else 'NO'}; "
          f"ingest meanwhile: {p['ingest_during']['accepted']}/{p['ingest_during']['sent']} accepted "
          f"{ok[r['verdict']['purge']]}")
    missed = [k for k, v in r["verdict"].items() if not v]
    print(f"\ntargets missed: {', '.join(missed)}" if missed else "\nevery target met")


def main() -> None:
    """Run the store-at-scale benchmark once and report."""
    OUT.mkdir(parents=True, exist_ok=True)
    db_url = _database_url()
    if db_url is None:
        sys.exit("make bench-store needs PostgreSQL: set BENCH_DATABASE_URL to a server that answers")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    results: dict = {"started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                     "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                 "load_average_at_start": os.getloadavg()},
                     "settings": {"events": EVENTS, "days": DAYS, "requests": REQUESTS, "warmup": WARMUP,
                                  "seconds": SECONDS, "connections": CONNECTIONS,
                                  "web": {"workers": WEB_WORKERS, "connections": WEB_CONNECTIONS}},
                     "targets": TARGETS}
    stack = Stack(db_url, web_workers=WEB_WORKERS, web_connections=WEB_CONNECTIONS, worker_env=CONSOLE_ENV)
    twin = Stack(db_url, web_workers=WEB_WORKERS, web_connections=WEB_CONNECTIONS, worker_env=CONSOLE_ENV)
    try:
        stack.start(workers=False)
        store = Store(stack.db.url)
        population = _population(stack, store)
        results["merchants"] = [{"id": m.id, "name": m.name, "share": m.share,
                                 "endpoints": [vars(e) for e in m.endpoints]} for m in population]
        _log(f"stack up: database {stack.db.name}, web on {stack.base_url}")
        twin.start(workers=False)
        twin_store = Store(twin.db.url)
        _population(twin, twin_store)
        twin_store.dispose()
        _log(f"empty twin up: database {twin.db.name}, web on {twin.base_url}")

        now = dt.datetime.now(dt.timezone.utc)
        _log(f"loading {EVENTS:,} events over {DAYS} days")
        results["load"] = load(stack.db.url, population, EVENTS, now.timestamp())
        _log(f"loaded in {results['load']['seconds']} s, VACUUM ANALYZE {results['load']['vacuum_analyze_seconds']} s")
        results["sizes"] = sizes(stack.db.url, EVENTS)
        _log(f"bytes per event: {results['sizes']['bytes_per_event']:,}")
        results["side_tables"] = side_tables(stack.db.url, population, EVENTS, now.timestamp())
        _log(f"side tables: {results['side_tables']}")

        _, admin_key = create_api_key(store, None, "bench-store admin")
        _, merchant_key = create_api_key(store, population[0].id, "bench-store merchant")
        clients = {"api": Client(stack.web_port, api_key=admin_key),
                   "merchant api": Client(stack.web_port, api_key=merchant_key),
                   "console": Client(stack.web_port).sign_in(admin_key),
                   "merchant console": Client(stack.web_port).sign_in(merchant_key)}
        plan = queries(_samples(stack.db.url, population), now)
        _log(f"timing {len(plan)} queries, {REQUESTS} requests each")
        results["queries"] = measure(clients, plan, REQUESTS, stack.procs["web"], _log)
        explain_all(stack, {"api": admin_key, "merchant api": merchant_key, "console": admin_key,
                            "merchant console": merchant_key}, plan, results["queries"])
        whole = [f"{q['client']} {q['query']}: {', '.join(q['whole_reads'])}" for q in results["queries"]
                 if q["whole_reads"]]
        _log(f"plans: {sum(q['statements'] for q in results['queries'])} statements EXPLAINed, "
             + (f"big tables read whole by: {'; '.join(whole)}" if whole else "none reads a big table whole"))

        ingest = results["ingest"] = ingest_full_vs_empty(stack, twin)
        twin.close()
        _log(f"ingest, in turns: full store {ingest['full']['rps']:.0f} req/s, empty twin {ingest['empty']['rps']:.0f} "
             f"req/s: {ingest['ratio']:.0%} (rounds {', '.join(f'{r:.0%}' for r in ingest['rounds_ratio'])})")

        _log("purge while callbacks arrive")
        results["purge"] = purge_under_ingest(stack, store, now)
        store.dispose()
    finally:
        twin.close()
        stack.close()
    results["machine"]["load_average_at_end"] = os.getloadavg()
    purge = results["purge"]
    results["verdict"] = {
        "queries_p95": all(q["p95_ms"] < TARGETS["p95_ms"] and not q["non_200"] for q in results["queries"]),
        "query_plans": not any(q["whole_reads"] for q in results["queries"]),
        "ingest_ratio": results["ingest"]["ratio"] >= TARGETS["ingest_ratio"],
        "purge": purge["exact"] and purge["ingest_during"]["refused"] == 0,
        "ingest_errors": all(results["ingest"][p]["non_2xx"] == 0 and results["ingest"][p]["errors"] == 0
                             for p in ("empty", "full")),
    }
    (OUT / "store.json").write_text(json.dumps(results, indent=2, default=str))
    _table(results)
    print(f"\nwritten: {OUT / 'store.json'}")


if __name__ == "__main__":
    main()
