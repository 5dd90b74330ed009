"""A database outage costs no M-Pesa callback: what the store cannot record is spooled in Redis, then drained.

The store is made unavailable for real: PostgreSQL refuses connections (as the stop-database drill does),
and SQLite's file is moved away and a directory left at its path, so it cannot be opened. Redis is the
session's, with its append-only file turned on for the test (the spool refuses a Redis without one).
"""

from __future__ import annotations

import contextlib
import json
import shutil
from pathlib import Path

import pytest
import redis as redis_lib
import sqlalchemy
from sqlalchemy import select

from payhook_shared.store import Delivery, Event
from payhook_webhook import spool
from payhook_webhook.app import create_app
from payhook_webhook.receive import ACCEPTED
from tests.factories import callback_url, fixture_bytes, merchant_with_endpoints, set_merchant_settings
from tests.support import RedisServer, free_port, wait_until

STORE_DOWN = {"error": {"code": "store_unavailable",
                        "message": "the callback could be neither recorded nor spooled; retry later"}}


def stk(ref: str) -> bytes:
    """A successful STK callback, unique by ``ref`` (its dedupe key is ``stk:ws_CO_<ref>``)."""
    callback = {"MerchantRequestID": "29115-34620561-1", "CheckoutRequestID": f"ws_CO_{ref}", "ResultCode": 0,
                "ResultDesc": "The service request is processed successfully.",
                "CallbackMetadata": {"Item": [{"Name": "Amount", "Value": 1.0},
                                              {"Name": "MpesaReceiptNumber", "Value": f"R{ref}"},
                                              {"Name": "TransactionDate", "Value": 20191219102115},
                                              {"Name": "PhoneNumber", "Value": 254708374149}]}}
    return json.dumps({"Body": {"stkCallback": callback}}).encode()


@pytest.fixture
def durable_redis(redis_url, redis_client):
    """The session Redis with ``appendonly yes`` for this test, as a deployment must run it."""
    redis_client.config_set("appendonly", "yes")
    wait_until(lambda: redis_client.info("persistence")["aof_rewrite_in_progress"] == 0, what="AOF rewrite")
    yield redis_url
    redis_client.config_set("appendonly", "no")


@pytest.fixture
def outage(database_url, postgres, store):
    """``outage(app)``: a context in which ``app``'s store can be neither read nor written.

    The test's own ``store`` loses its connections too; it opens new ones after.
    """

    @contextlib.contextmanager
    def down(app):
        app_store = app.extensions["payhook.store"]
        if database_url.startswith("sqlite"):
            path = Path(sqlalchemy.make_url(database_url).database)
            app_store.dispose()  # closes the connections, which checkpoints the WAL into the file
            moved = [(p, p.with_name(p.name + ".away")) for p in (path, *path.parent.glob(path.name + "-*"))]
            for here, away in moved:
                here.rename(away)
            path.mkdir()
            try:
                yield
            finally:
                app_store.dispose()
                path.rmdir()
                for here, away in moved:
                    away.rename(here)
            return
        name = sqlalchemy.make_url(database_url).database
        postgres._execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        postgres._drop_connections(name)
        try:
            yield
        finally:
            postgres._execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
            store.dispose()

    return down


def make_app(database_url, redis_url, **settings):
    app = create_app({"database_url": database_url, "redis_url": redis_url, "log_format": "text",
                      "endpoint_allowlist": ("127.0.0.0/8",), **settings})
    app.config["TESTING"] = True
    return app


def events(store) -> list[Event]:
    with store.read() as session:
        return list(session.scalars(select(Event).order_by(Event.dedupe_key)))


def deliveries(store) -> set[tuple[str, str, int]]:
    with store.read() as session:
        return {tuple(row) for row in session.execute(select(Delivery.event_id, Delivery.state, Delivery.attempts))}


def test_callbacks_during_an_outage_are_answered_spooled_then_recorded_and_delivered_once(
        database_url, store, durable_redis, redis_client, outage, receiver, delivery_worker):
    merchant, _ = merchant_with_endpoints(store, receiver.url, email=None)
    set_merchant_settings(store, merchant, {"c2b_validation": {"mode": "rules", "max_amount": "5"}})
    app = make_app(database_url, durable_redis)
    client = app.test_client()
    # Before the outage: recorded as always (and this process now knows the merchant's profile).
    assert client.post(callback_url(merchant, "stk"), data=stk("before"),
                       content_type="application/json").get_json() == ACCEPTED

    with outage(app):
        for body in (stk("a"), stk("b"), stk("b")):  # "b" twice: Safaricom's rare repeat
            response = client.post(callback_url(merchant, "stk"), data=body, content_type="application/json")
            assert (response.status_code, response.get_json()) == (200, ACCEPTED)
        # C2B validation still answers synchronously by the merchant's rules (amount 10 > 5: rejected).
        response = client.post(callback_url(merchant, "c2b-validation"),
                               data=fixture_bytes("mpesa/c2b_validation.json"), content_type="application/json")
        assert response.get_json() == {"ResultCode": "C2B00013", "ResultDesc": "Rejected"}
        # A wrong token is still refused: the URL is authenticated against the profile last read.
        bad = f"/cb/{merchant.id}/{'0' * 32}/stk"
        assert client.post(bad, data=stk("c"), content_type="application/json").status_code == 404
        assert redis_client.xlen(spool.STREAM) == 4
        # The drainer finds the store still down: nothing leaves the spool.
        assert app.extensions["payhook.spool_drainer"].drain() == 0
        assert redis_client.xlen(spool.STREAM) == 4
        metrics = client.get("/metrics").get_data(as_text=True)
        assert "payhook_spool_waiting 4.0" in metrics

    drained = app.extensions["payhook.spool_drainer"].drain()
    assert drained == 4 and redis_client.xlen(spool.STREAM) == 0
    recorded = events(store)
    assert [e.dedupe_key for e in recorded] == ["c2b-validation:RKTQDM7W6S", "stk:ws_CO_a", "stk:ws_CO_b",
                                                "stk:ws_CO_before"]
    validation = recorded[0]
    assert (validation.details["decision"], validation.details["decision_code"]) == ("rejected", "C2B00013")
    assert all(e.details["spooled_at"] for e in recorded[:3]) and "spooled_at" not in recorded[3].details
    # Drained again (a drainer stopped before its XDEL): still recorded once.
    redis_client.xadd(spool.STREAM, {"merchant_id": merchant.id, "kind": "stk", "body": stk("a"),
                                     "content_type": "application/json", "request_id": "", "spooled_at": ""})
    assert app.extensions["payhook.spool_drainer"].drain() == 1
    assert len(events(store)) == 4

    delivery_worker()
    stk_ids = {e.id for e in recorded if e.type != "mpesa.c2b.validation"}
    wait_until(lambda: deliveries(store) == {(event_id, "done", 1) for event_id in stk_ids}, timeout=20,
               what="every STK event delivered")
    assert sorted(r.headers["webhook-id"] for r in receiver.received) == sorted(stk_ids)
    app.extensions["payhook.store"].dispose()


def test_with_redis_down_too_the_answer_is_503_and_nothing_is_spooled(database_url, store, outage, tmp_path):
    server = RedisServer(free_port(), tmp_path / "redis", appendonly=True)
    server.start()
    merchant, _ = merchant_with_endpoints(store, "http://127.0.0.1:9/w")
    app = make_app(database_url, server.url)
    client = app.test_client()
    assert client.post(callback_url(merchant, "stk"), data=stk("before"),
                       content_type="application/json").status_code == 200
    try:
        with outage(app):
            server.stop()
            response = client.post(callback_url(merchant, "stk"), data=stk("lost"), content_type="application/json")
            assert (response.status_code, response.get_json()) == (503, STORE_DOWN)
    finally:
        server.stop()
    assert [e.dedupe_key for e in events(store)] == ["stk:ws_CO_before"]
    app.extensions["payhook.store"].dispose()


def test_a_redis_without_an_append_only_file_is_no_spool(database_url, store, redis_url, redis_client, outage):
    merchant, _ = merchant_with_endpoints(store, "http://127.0.0.1:9/w")
    app = make_app(database_url, redis_url)
    client = app.test_client()
    assert client.post(callback_url(merchant, "stk"), data=stk("before"),
                       content_type="application/json").status_code == 200
    with outage(app):
        response = client.post(callback_url(merchant, "stk"), data=stk("x"), content_type="application/json")
    assert (response.status_code, response.get_json()) == (503, STORE_DOWN)
    assert redis_client.xlen(spool.STREAM) == 0
    app.extensions["payhook.store"].dispose()


def test_a_process_that_never_read_the_merchant_cannot_authenticate_it_and_answers_503(
        database_url, store, durable_redis, redis_client, outage):
    merchant, _ = merchant_with_endpoints(store, "http://127.0.0.1:9/w")
    app = make_app(database_url, durable_redis)
    with outage(app):
        response = app.test_client().post(callback_url(merchant, "stk"), data=stk("x"),
                                          content_type="application/json")
    assert response.status_code == 503
    assert redis_client.xlen(spool.STREAM) == 0
    app.extensions["payhook.store"].dispose()


def test_spool_entries_survive_a_redis_restart(tmp_path):
    """What "durable" rests on: an XADD acknowledged by an AOF Redis is there after a kill and restart."""
    server = RedisServer(free_port(), tmp_path / "redis", appendonly=True)
    server.start()
    try:
        client = redis_lib.Redis.from_url(server.url)
        client.xadd(spool.STREAM, {"body": b"{}"})
        server.process.kill()
        server.process.wait(10)
        server.start()
        assert redis_lib.Redis.from_url(server.url).xlen(spool.STREAM) == 1
    finally:
        server.stop()
    shutil.rmtree(tmp_path / "redis", ignore_errors=True)
