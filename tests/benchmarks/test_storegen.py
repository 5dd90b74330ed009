"""make bench-store's rows: what the normalisers would have stored, and loadable with every constraint on."""

from __future__ import annotations

import datetime as dt
import json
import sys
import time
from pathlib import Path

import psycopg
import pytest

from payhook_shared import ids, signing
from payhook_shared.callbacks import mpesa, stripe
from payhook_shared.store import Endpoint, Merchant, Store

# bench/ is the checkout's, not an installed package.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from bench import storegen  # noqa: E402

NORMALISERS = {"mpesa.stk_push": mpesa.normalise_stk, "mpesa.c2b.confirmation": mpesa.normalise_c2b_confirmation,
               "mpesa.b2c": mpesa.NORMALISERS["b2c-result"], "mpesa.account_balance": mpesa.NORMALISERS["balance-result"],
               "stripe.payment_intent.succeeded": stripe.normalise, "stripe.customer.created": stripe.normalise}
COMPARED = ("type", "status", "dedupe_key", "amount_minor", "currency", "receipt", "reference", "phone",
            "customer_email")
NOW = time.time()


def population() -> list[storegen.Merchant]:
    return [storegen.Merchant("mch_big", "Big", 0.7, (storegen.Endpoint("ep_a", 0.01), storegen.Endpoint("ep_b", 0.2)),
                              "owner@big.example"),
            storegen.Merchant("mch_small", "Small", 0.3, (storegen.Endpoint("ep_c", 0.02),), None)]


def rows(text: str, columns: tuple[str, ...]) -> list[dict]:
    return [{c: (None if v == "\\N" else v) for c, v in zip(columns, line.split("\t"), strict=True)}
            for line in text.splitlines()]


@pytest.fixture(scope="module")
def chunk():
    return storegen.chunk(population(), NOW - 120 * 86400, NOW - 120, 3000, NOW, seed=5)


def test_events_are_what_the_normalisers_make_of_their_raw_payloads(chunk):
    events = rows(chunk.texts[0], storegen.EVENT_COLUMNS)
    assert len(events) == chunk.events == 3000
    assert {e["type"] for e in events} == set(NORMALISERS)
    for event in events:
        normalised = NORMALISERS[event["type"]](json.loads(event["raw_payload"]))
        expected = {field: getattr(normalised, field) for field in COMPARED}
        expected["amount_minor"] = None if expected["amount_minor"] is None else str(expected["amount_minor"])
        assert {field: event[field] for field in COMPARED} == expected, event["raw_payload"]
        json.loads(event["provider_ids"]), json.loads(event["details"])
    received = [dt.datetime.fromisoformat(e["received_at"]) for e in events]
    # Ids carry the time received, in order, as payhook_shared.ids makes them.
    assert [e["id"] for e in events] == sorted(e["id"] for e in events)
    assert events[0]["id"][:16] == ids.earliest("evt", received[0])
    assert (received[-1] - received[0]).days >= 119


def test_delivery_states_and_attempts_agree(chunk):
    deliveries = rows(chunk.texts[1], storegen.DELIVERY_COLUMNS)
    attempts = rows(chunk.texts[2], storegen.ATTEMPT_COLUMNS)
    per_delivery: dict[str, int] = {}
    for attempt in attempts:
        per_delivery[attempt["delivery_id"]] = per_delivery.get(attempt["delivery_id"], 0) + 1
    for d in deliveries:
        assert per_delivery.get(d["id"], 0) == int(d["attempts"])
        assert (d["state"] == "dead") == (d["dead_at"] is not None) and (d["state"] == "done") == (
            d["delivered_at"] is not None)
        if d["state"] == "dead":
            assert int(d["attempts"]) == storegen.DEAD_ATTEMPTS
    troubled = [d for d in deliveries if d["endpoint_id"] == "ep_b"]
    assert sum(d["state"] == "dead" for d in troubled) > 5 * sum(
        d["state"] == "dead" for d in deliveries if d["endpoint_id"] == "ep_a")
    assert chunk.states["done"] + chunk.states["dead"] + chunk.states["pending"] == len(deliveries)


def test_rows_load_with_every_constraint_checked(postgres, chunk):
    if postgres is None:
        pytest.skip("COPY is PostgreSQL's (TEST_DATABASE_URL)")
    name = postgres.create()
    try:
        store = Store(postgres.url_for(name))
        with store.write() as session:
            for m in population():
                session.add(Merchant(id=m.id, name=m.name, notification_email=m.notification_email,
                                     callback_token=ids.new_token(), settings={}))
                session.flush()
                for e in m.endpoints:
                    session.add(Endpoint(id=e.id, merchant_id=m.id, url="https://shop.example/hooks",
                                         secret=signing.generate_secret()))
        store.dispose()
        with psycopg.connect(postgres.url_for(name).replace("postgresql+psycopg://", "postgresql://")) as conn:
            with conn.cursor() as cur:
                for (table, columns), text in zip(storegen.TABLES, chunk.texts):
                    with cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                        copy.write(text)
            counts = [conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] for table, _ in storegen.TABLES]
        assert counts == [chunk.events, chunk.deliveries, chunk.attempts, chunk.emails]
    finally:
        postgres.drop(name)
