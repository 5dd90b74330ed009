"""Database statements per accepted callback and per delivery attempt, counted and pinned.

Counted with SQLAlchemy's cursor events, so a change that adds a round trip on
a hot path fails here and has to say why.
"""

from __future__ import annotations

import contextlib

from sqlalchemy import event, select

from factories import fixture_bytes, merchant_with_endpoints, stk_url
from payhook_shared.store import Delivery, JobState
from support import wait_until

# Callback: merchant with its endpoints (1), event insert (1), every delivery in one batched insert (1),
# the merchant's notice (1). BEGIN is SQLite's explicit transaction start, not a round trip of its own.
CALLBACK_STATEMENTS = 4
# Attempt: claim (1), load delivery+endpoint+event+merchant (1), record attempt (1), update delivery (1).
ATTEMPT_STATEMENTS = 4


@contextlib.contextmanager
def counting(engine):
    statements: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement.split(None, 1)[0].upper())

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", record)


def test_statements_per_accepted_callback(client, store, webhook_app):
    merchant, _ = merchant_with_endpoints(store, "http://127.0.0.1:9/a", "http://127.0.0.1:9/b")
    with counting(webhook_app.extensions["payhook.store"].engine) as statements:
        response = client.post(stk_url(merchant), data=fixture_bytes("mpesa/stk_success.json"),
                               content_type="application/json")
    assert response.status_code == 200
    assert len([s for s in statements if s != "BEGIN"]) == CALLBACK_STATEMENTS, statements


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
    attempt = [s for s in statements if s in ("UPDATE", "SELECT", "INSERT")]
    assert attempt[:ATTEMPT_STATEMENTS] == ["UPDATE", "SELECT", "INSERT", "UPDATE"], statements
