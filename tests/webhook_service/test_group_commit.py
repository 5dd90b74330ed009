"""Events recorded at the same time share one write (group commit), and each request still gets its own outcome.

The first write is held until the others have queued behind it, so the second
write is one batch of all of them, on a real database and a real Redis.
"""

from __future__ import annotations

import copy
import json
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError

from factories import fixture_json, load_merchant, merchant_with_endpoints
from payhook_shared.callbacks.mpesa import normalise_stk
from payhook_shared.priority import Priority
from payhook_shared.store import Delivery, Email, Endpoint, Event
from payhook_webhook import ingest
from payhook_webhook.errors import ProfileChanged
from support import queued_deliveries


def _callback(checkout: str | None = None):
    payload = copy.deepcopy(fixture_json("mpesa/stk_success.json"))
    payload["Body"]["stkCallback"]["CheckoutRequestID"] = checkout or f"ws_CO_{uuid.uuid4().hex}"
    return normalise_stk(payload), json.dumps(payload).encode()


@pytest.fixture
def batches(monkeypatch):
    """The size of every write; the first is held until ``expect`` more events have queued behind it."""
    real = ingest._write_and_send
    sizes: list[int] = []
    state = {"expect": 0, "recorder": None}

    def held(store, broker, writes):
        if not sizes and state["expect"]:
            deadline = time.monotonic() + 10
            while len(state["recorder"]._queue) < state["expect"] and time.monotonic() < deadline:
                time.sleep(0.005)
        sizes.append(len(writes))
        return real(store, broker, writes)

    monkeypatch.setattr(ingest, "_write_and_send", held)

    def hold_first(recorder, expect: int) -> list[int]:
        state.update(recorder=recorder, expect=expect)
        return sizes
    return hold_first


def _record_all(recorder, jobs):
    """Record each ``(merchant, event, raw)`` from its own thread; the outcome or the exception of each."""
    def one(job):
        try:
            return recorder.record(*job, Priority.NORMAL)
        except Exception as exc:  # the outcome under test
            return exc
    with ThreadPoolExecutor(len(jobs)) as pool:
        first = pool.submit(one, jobs[0])
        time.sleep(0.05)  # the first leads; the rest queue behind its held write
        rest = [pool.submit(one, job) for job in jobs[1:]]
        return [first.result()] + [future.result() for future in rest]


def test_concurrent_events_are_written_together(webhook_app, store, redis_client, batches):
    merchant, _ = merchant_with_endpoints(store, "http://127.0.0.1:9/a", "http://127.0.0.1:9/b")
    profile = load_merchant(store, merchant.id)
    recorder = webhook_app.extensions["payhook.recorder"]
    events = [_callback() for _ in range(5)]
    twin = _callback(events[1][0].dedupe_key.split(":")[-1])
    assert twin[0].dedupe_key == events[1][0].dedupe_key
    sizes = batches(recorder, expect=5)

    outcomes = _record_all(recorder, [(profile, e, raw) for e, raw in [events[0], *events[1:], twin]])

    assert sizes == [1, 5]
    new = [o for o in outcomes if not o.duplicate]
    duplicate = [o for o in outcomes if o.duplicate]
    assert len(new) == 5 and len(duplicate) == 1
    assert duplicate[0].event_id in {o.event_id for o in new}
    assert all(o.deliveries == 2 and o.emails == 1 for o in new)
    with store.read() as session:
        assert session.scalar(select(func.count()).select_from(Event)) == 5
        assert session.scalar(select(func.count()).select_from(Delivery)) == 10
        assert session.scalar(select(func.count()).select_from(Email)) == 5
    with store.read() as session:
        assert sorted(queued_deliveries(redis_client, "delivery.normal")) == sorted(session.scalars(select(Delivery.id)))
    # One message per write: the first event's two deliveries, then the batch's eight.
    assert redis_client.llen("dramatiq:delivery.normal") == 2
    assert redis_client.llen("dramatiq:mail.normal") == 5


def test_one_bad_event_fails_alone(webhook_app, store, redis_client, batches):
    if store.dialect != "postgresql":
        pytest.skip("SQLite does not enforce column lengths")
    merchant, _ = merchant_with_endpoints(store, "http://127.0.0.1:9/a")
    profile = load_merchant(store, merchant.id)
    recorder = webhook_app.extensions["payhook.recorder"]
    events = [_callback() for _ in range(4)]
    events[2][0].currency = "KESX"  # longer than its column: the database refuses this one
    sizes = batches(recorder, expect=3)

    outcomes = _record_all(recorder, [(profile, e, raw) for e, raw in events])

    assert sizes == [1, 3]
    assert isinstance(outcomes[2], DBAPIError)
    assert all(not o.duplicate for i, o in enumerate(outcomes) if i != 2)
    with store.read() as session:
        assert session.scalar(select(func.count()).select_from(Event)) == 3
    with store.read() as session:
        assert sorted(queued_deliveries(redis_client, "delivery.normal")) == sorted(session.scalars(select(Delivery.id)))


def test_a_stale_profile_in_a_batch_refuses_only_its_event(webhook_app, store, redis_client, batches):
    if store.dialect != "postgresql":
        pytest.skip("profiles are read fresh for every callback on SQLite")
    current, _ = merchant_with_endpoints(store, "http://127.0.0.1:9/a")
    changed, _ = merchant_with_endpoints(store, "http://127.0.0.1:9/b")
    profiles = {m.id: load_merchant(store, m.id) for m in (current, changed)}
    with store.write() as session:
        session.scalars(select(Endpoint).where(Endpoint.merchant_id == changed.id)).one().enabled = False
    recorder = webhook_app.extensions["payhook.recorder"]
    sizes = batches(recorder, expect=2)

    outcomes = _record_all(recorder, [(profiles[current.id], *_callback()), (profiles[changed.id], *_callback()),
                                      (profiles[current.id], *_callback())])

    assert sizes == [1, 2]
    assert isinstance(outcomes[1], ProfileChanged)
    assert not outcomes[0].duplicate and not outcomes[2].duplicate
    with store.read() as session:
        assert set(session.scalars(select(Event.merchant_id))) == {current.id}


def test_a_lone_event_is_written_at_once(webhook_app, store, batches):
    merchant, _ = merchant_with_endpoints(store, "http://127.0.0.1:9/a")
    profile = load_merchant(store, merchant.id)
    recorder = webhook_app.extensions["payhook.recorder"]
    sizes = batches(recorder, expect=0)
    event, raw = _callback()
    done = threading.Event()
    outcome = []
    threading.Thread(target=lambda: (outcome.append(recorder.record(profile, event, raw, Priority.NORMAL)),
                                     done.set())).start()
    assert done.wait(10)
    assert sizes == [1] and not outcome[0].duplicate
