"""Operational webhooks: payhook.endpoint.* and payhook.delivery.dead reach subscribers, not the endpoint concerned."""

from __future__ import annotations

import threading

import jsonschema
from sqlalchemy import select

from factories import fixture_bytes, merchant_with_endpoints, stk_url
from payhook_shared import catalog, ids, operational, signing
from payhook_shared.store import Endpoint, Event
from support import Receiver, wait_until

OPS = list(operational.TYPES)


def _watcher(store, merchant_id: str, url: str) -> Endpoint:
    with store.write() as session:
        endpoint = Endpoint(id=ids.new_id("ep"), merchant_id=merchant_id, url=url, secret=signing.generate_secret(),
                            event_types=OPS)
        session.add(endpoint)
    return endpoint


def _check(body: dict) -> None:
    entry = catalog.entry_for(body["type"], body["data"]["provider"])
    jsonschema.Draft202012Validator(entry.body_schema(), format_checker=jsonschema.FormatChecker()).validate(body)


def post_payment(client, merchant, n: int = 0) -> None:
    body = fixture_bytes("mpesa/stk_success.json").replace(b"ws_CO_191220191020363925", f"ws_CO_op{n}".encode())
    assert client.post(stk_url(merchant), data=body, content_type="application/json").status_code == 200


def test_gone_endpoint_raises_disabled_and_dead_to_the_subscriber_only(client, store, receiver, delivery_worker):
    gone = Receiver().start()
    gone.respond = lambda req: (410, {}, b"gone")
    try:
        merchant, [failing] = merchant_with_endpoints(store, gone.url)
        watcher = _watcher(store, merchant.id, receiver.url)
        delivery_worker(retry_schedule=(0.2,), retry_jitter=0.0)
        post_payment(client, merchant)
        received = receiver.wait_for(2)
        bodies = {r.json()["type"]: r for r in received}
        assert set(bodies) == {operational.ENDPOINT_DISABLED, operational.DELIVERY_DEAD}
        for request in received:
            signing.verify(watcher.secret, request.headers, request.body)
            body = request.json()
            _check(body)
            assert body["data"]["details"]["endpoint_id"] == failing.id and body["test"] is False
        dead = bodies[operational.DELIVERY_DEAD].json()["data"]["details"]
        assert dead["category"] == "gone" and dead["last_status"] == 410 and dead["event_type"] == "mpesa.stk_push"
        # The gone endpoint got the payment only: nothing about itself.
        assert [r.json()["type"] for r in gone.received] == ["mpesa.stk_push"]
    finally:
        gone.stop()


def test_failing_then_recovered_once_per_incident(client, store, receiver, delivery_worker):
    up = threading.Event()
    flaky = Receiver().start()
    flaky.respond = lambda req: (200, {}, b"ok") if up.is_set() else (503, {}, b"down")
    try:
        merchant, [endpoint] = merchant_with_endpoints(store, flaky.url)
        _watcher(store, merchant.id, receiver.url)
        delivery_worker(retry_schedule=(0.2,) * 30, retry_jitter=0.0, circuit_threshold=2, circuit_cooldown=0.3)
        post_payment(client, merchant, 1)
        post_payment(client, merchant, 2)
        first = receiver.wait_for(1)[0].json()
        assert first["type"] == operational.ENDPOINT_FAILING and first["data"]["details"]["endpoint_id"] == endpoint.id
        up.set()
        wait_until(lambda: any(r.json()["type"] == operational.ENDPOINT_RECOVERED for r in receiver.received),
                   timeout=15, what="recovered webhook")
        types = [r.json()["type"] for r in receiver.received]
        assert types.count(operational.ENDPOINT_FAILING) == 1 and types.count(operational.ENDPOINT_RECOVERED) == 1
        for request in receiver.received:
            _check(request.json())
        assert not any(r.json()["type"].startswith("payhook.") for r in flaky.received)
    finally:
        flaky.stop()


def test_nothing_is_recorded_without_a_subscriber(client, store, delivery_worker):
    gone = Receiver().start()
    gone.respond = lambda req: (410, {}, b"gone")
    try:
        merchant, _ = merchant_with_endpoints(store, gone.url)
        delivery_worker(retry_schedule=(0.2,), retry_jitter=0.0)
        post_payment(client, merchant)
        wait_until(lambda: not _endpoint(store, merchant.id).enabled, what="endpoint disabled")
        with store.read() as session:
            assert session.scalars(select(Event.type)).all() == ["mpesa.stk_push"]
    finally:
        gone.stop()


def _endpoint(store, merchant_id):
    with store.read() as session:
        return session.scalars(select(Endpoint).where(Endpoint.merchant_id == merchant_id)).one()
