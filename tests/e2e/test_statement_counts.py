"""Database round trips per accepted callback and per delivery attempt, counted and pinned.

Counted where they reach the driver: on PostgreSQL every cursor's statements
(the hot paths run on the psycopg connection itself, past SQLAlchemy), on
SQLite SQLAlchemy's statement event; plus BEGIN, COMMIT and ROLLBACK on
connections that are not in autocommit. A change that adds a round trip on a
hot path fails here and has to say why.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select

from factories import fixture_bytes, fixture_json, merchant_with_endpoints, stk_url
from payhook_shared.jobs import plan
from payhook_shared.messages import DeliverWebhook
from payhook_shared.priority import Priority
from payhook_shared.store import Delivery, JobState
from support import counting, wait_until

# PostgreSQL callback, the merchant's profile cached by an earlier one: the event, both deliveries and the
# merchant's notice in one call of payhook_record_events, which also checks the profile is current, and (an STK
# result) the settling of its payment intent in the same statement, a WITH around the call (1). SQLite (in process,
# nothing to save): the merchant read, then BEGIN, the event's and deliveries' inserts, the intent's UPDATE, the
# notice's insert, COMMIT.
CALLBACK_ROUND_TRIPS = {"postgresql": ["WITH"],
                        "sqlite": ["BEGIN", "SELECT", "ROLLBACK", "BEGIN", "INSERT", "INSERT", "UPDATE", "INSERT",
                                   "COMMIT"]}
# PostgreSQL attempt: claim and load in one statement (1); record the attempt and the outcome in one (1); the
# same two for all the deliveries one message names.
ATTEMPT_ROUND_TRIPS = {"postgresql": ["WITH", "WITH"],
                       "sqlite": ["BEGIN", "UPDATE", "SELECT", "COMMIT", "BEGIN", "INSERT", "UPDATE", "COMMIT"]}


def test_statements_per_accepted_callback(client, store, webhook_app):
    merchant, _ = merchant_with_endpoints(store, "http://127.0.0.1:9/a", "http://127.0.0.1:9/b")
    earlier = fixture_json("mpesa/stk_success.json")
    earlier["Body"]["stkCallback"]["CheckoutRequestID"] += "-earlier"
    assert client.post(stk_url(merchant), json=earlier).status_code == 200
    with counting(webhook_app.extensions["payhook.store"].engine) as statements:
        response = client.post(stk_url(merchant), data=fixture_bytes("mpesa/stk_success.json"),
                               content_type="application/json")
    assert response.status_code == 200
    trips = [name for _, name, _ in statements]
    assert trips == CALLBACK_ROUND_TRIPS[store.dialect], trips


def test_statements_per_delivery_attempt(client, store, receiver, delivery_worker):
    merchant, _ = merchant_with_endpoints(store, receiver.url, email=None)
    rt = delivery_worker()
    with counting(rt.store.engine) as statements:
        assert client.post(stk_url(merchant), data=fixture_bytes("mpesa/stk_success.json"),
                           content_type="application/json").status_code == 200

        def delivered():
            with store.read() as session:
                return session.scalar(select(Delivery.state)) == JobState.DONE.value
        wait_until(delivered, what="the delivery")
    expected = ATTEMPT_ROUND_TRIPS[store.dialect]
    trips = statements.of_thread_that_ran("INSERT INTO delivery_attempts")
    assert trips[:len(expected)] == expected, trips


def test_a_message_of_many_deliveries_costs_the_round_trips_of_one(client, store, receiver, redis_client,
                                                                   delivery_worker):
    """Six successes named by one message: one claim and one record on PostgreSQL, as for a single delivery."""
    if store.dialect != "postgresql":
        pytest.skip("SQLite claims and records each delivery in turn, in one transaction per step")
    merchant, _ = merchant_with_endpoints(store, receiver.url, email=None)
    for n in range(6):
        body = fixture_bytes("mpesa/stk_success.json").replace(b"ws_CO_191220191020363925", f"ws_CO_{n}".encode())
        assert client.post(stk_url(merchant), data=body, content_type="application/json").status_code == 200
    redis_client.flushall()  # ingest's messages (one per callback here): this test sends one naming all six
    with store.read() as session:
        ids = tuple(session.scalars(select(Delivery.id)))
    rt = delivery_worker(threads=8)
    with counting(rt.store.engine) as statements:
        rt.broker.enqueue(plan(DeliverWebhook(delivery_ids=ids, priority=Priority.NORMAL)))

        def delivered():
            with store.read() as session:
                return set(session.scalars(select(Delivery.state))) == {JobState.DONE.value}
        wait_until(delivered, what="the six deliveries")
    trips = statements.of_thread_that_ran("INSERT INTO delivery_attempts")
    assert trips == ATTEMPT_ROUND_TRIPS["postgresql"], trips
