"""Resend and replay through the API, delivered by the real delivery worker to real receivers.

A resend reaches the receiver again with the same ``webhook-id``; a replay delivers every event of its range
to a new endpoint exactly once, however often it is run; both are audited and scoped to the merchant.
"""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from factories import api_key, fixture_bytes, merchant_with_endpoints, stk_url
from payhook_shared import jobs, replays
from payhook_shared.store import AuditEntry, Delivery, Replay
from payhook_shared.store.models import utcnow
from support import Receiver, wait_until

CHECKOUT = "ws_CO_191220191020363925"


def post_stk(client, merchant, tag: str) -> None:
    body = fixture_bytes("mpesa/stk_success.json").replace(CHECKOUT.encode(), f"ws_CO_{tag}".encode())
    assert client.post(stk_url(merchant), data=body, content_type="application/json").status_code == 200


def states(store) -> list[str]:
    with store.read() as session:
        return sorted(session.scalars(select(Delivery.state)))


def event_ids(client, headers) -> list[str]:
    return [e["id"] for e in client.get("/v1/events?limit=100", headers=headers).get_json()["data"]]


def actions(store) -> list[str]:
    with store.read() as session:
        return list(session.scalars(select(AuditEntry.action).order_by(AuditEntry.id)))


@pytest.fixture
def second_receiver():
    r = Receiver().start()
    yield r
    r.stop()


def test_resend_of_a_delivered_event_reaches_the_receiver_again_with_the_same_webhook_id(
        client, store, receiver, delivery_worker):
    merchant, [endpoint] = merchant_with_endpoints(store, receiver.url)
    delivery_worker()
    post_stk(client, merchant, "r1")
    [first] = receiver.wait_for(1)
    wait_until(lambda: states(store) == ["done"], what="delivered")
    key = api_key(store, merchant.id)
    [event_id] = event_ids(client, key)

    response = client.post(f"/v1/events/{event_id}/resend", headers=key)
    assert response.status_code == 202
    assert response.get_json() == {"event_id": event_id, "endpoints": {endpoint.id: "queued"}}
    second = receiver.wait_for(2)[1]
    assert second.headers["webhook-id"] == first.headers["webhook-id"] == event_id
    assert second.body == first.body
    wait_until(lambda: states(store) == ["done"], what="delivered again")
    [delivery] = client.get(f"/v1/events/{event_id}", headers=key).get_json()["deliveries"]
    assert [(a["number"], a["category"]) for a in delivery["attempt_log"]] == [(1, "success"), (2, "success")]
    assert actions(store) == ["resend_event"]

    # To one endpoint by id, and to an endpoint added since (it had no delivery of the event).
    response = client.post(f"/v1/merchants/{merchant.id}/endpoints", json={"url": receiver.url.replace(
        "/webhooks", "/late")}, headers=api_key(store))
    late = response.get_json()["id"]
    assert client.post(f"/v1/events/{event_id}/resend", json={"endpoint_id": late},
                       headers=key).get_json()["endpoints"] == {late: "queued"}
    third = receiver.wait_for(3)[2]
    assert third.path == "/late" and third.headers["webhook-id"] == event_id


def test_replay_to_a_new_endpoint_delivers_every_event_of_the_range_once_run_twice(
        client, store, receiver, second_receiver, delivery_worker):
    merchant, _ = merchant_with_endpoints(store, receiver.url)
    delivery_worker()
    before = utcnow() - dt.timedelta(seconds=1)
    for i in range(5):
        post_stk(client, merchant, f"rp{i}")
    receiver.wait_for(5)
    key = api_key(store, merchant.id)
    # The endpoint is created after the events were received.
    new = client.post(f"/v1/merchants/{merchant.id}/endpoints", json={"url": second_receiver.url},
                      headers=key).get_json()["id"]
    body = {"since": before.isoformat(), "until": (utcnow() + dt.timedelta(seconds=1)).isoformat()}

    response = client.post(f"/v1/endpoints/{new}/replay", json=body, headers=key)
    assert response.status_code == 202
    replay = response.get_json()
    assert replay["state"] == "running" and replay["id"].startswith("rpl_")
    second_receiver.wait_for(5)
    done = wait_until(lambda: (r := client.get(f"/v1/replays/{replay['id']}", headers=key).get_json())["state"]
                      == "done" and r, what="the replay finished")
    assert (done["events_scanned"], done["deliveries_created"], done["events_skipped"]) == (5, 5, 0)
    wait_until(lambda: states(store) == ["done"] * 10, what="every replayed delivery done")

    again = client.post(f"/v1/endpoints/{new}/replay", json=body, headers=key).get_json()
    rerun = wait_until(lambda: (r := client.get(f"/v1/replays/{again['id']}", headers=key).get_json())["state"]
                       == "done" and r, what="the second run finished")
    assert (rerun["events_scanned"], rerun["deliveries_created"], rerun["events_skipped"]) == (5, 0, 5)
    assert sorted(r.headers["webhook-id"] for r in second_receiver.received) == sorted(event_ids(client, key))
    assert len(second_receiver.received) == 5
    assert [r["id"] for r in client.get(f"/v1/endpoints/{new}/replays", headers=key).get_json()["data"]] == [
        again["id"], replay["id"]]
    assert [a for a in actions(store) if a != "create_endpoint"] == ["replay", "replay"]


def test_replay_only_failed_revives_dead_deliveries_and_respects_types(client, store, receiver, delivery_worker):
    receiver.respond = lambda req: (500, {}, b"")
    merchant, [endpoint] = merchant_with_endpoints(store, receiver.url)
    delivery_worker(retry_schedule=(), circuit_threshold=100)
    since = utcnow() - dt.timedelta(seconds=1)
    for i in range(3):
        post_stk(client, merchant, f"f{i}")
    wait_until(lambda: states(store) == ["dead"] * 3, what="dead letters")
    receiver.respond = lambda req: (200, {}, b"")
    key = api_key(store, merchant.id)
    skipped_types = client.post(f"/v1/endpoints/{endpoint.id}/replay", headers=key, json={
        "since": since.isoformat(), "types": ["mpesa.b2c"], "only_failed": True}).get_json()
    wait_until(lambda: client.get(f"/v1/replays/{skipped_types['id']}", headers=key).get_json()["state"] == "done",
               what="the typed replay finished")
    assert states(store) == ["dead"] * 3
    replay = client.post(f"/v1/endpoints/{endpoint.id}/replay", headers=key, json={
        "since": since.isoformat(), "only_failed": True}).get_json()
    wait_until(lambda: states(store) == ["done"] * 3, what="revived and delivered")
    done = client.get(f"/v1/replays/{replay['id']}", headers=key).get_json()
    assert (done["deliveries_revived"], done["deliveries_created"]) == (3, 0)


def test_a_replay_resumes_from_its_cursor_after_a_worker_died_mid_batch(client, store, redis_url):
    """Batch by batch, with a claim left by a dead worker: the next claim redoes nothing already done."""
    from payhook_shared.broker import create_broker

    merchant, [endpoint] = merchant_with_endpoints(store, "https://shop.example/hook")
    since = utcnow() - dt.timedelta(seconds=1)
    for i in range(5):
        post_stk(client, merchant, f"c{i}")
    with store.write() as session:
        session.execute(Delivery.__table__.delete())
        replay, _ = replays.start(session, session.get(type(endpoint), endpoint.id), since, None, None, False, "t")
        replay_id = replay.id
    broker = create_broker(redis_url)
    try:
        assert replays.run(store, broker, replay_id, batch=2) == "more"
        # A worker claims the next batch and dies: its claim's lease runs out, the batch was never recorded.
        now = utcnow()
        with store.write() as session:
            assert session.execute(jobs.claiming(Replay, replay_id, now, now)).rowcount == 1
        later = now + dt.timedelta(seconds=1)
        assert replays.run(store, broker, replay_id, batch=2, now=later) == "more"
        assert replays.run(store, broker, replay_id, batch=2, now=later) == "done"
        assert replays.run(store, broker, replay_id, batch=2, now=later) == "skipped"
    finally:
        broker.close()
    with store.read() as session:
        row = session.get(Replay, replay_id)
        assert (row.state, row.scanned, row.created) == ("done", 5, 5)
        assert len(set(session.scalars(select(Delivery.event_id)))) == 5


@pytest.mark.parametrize("action", ["resend", "resend to an endpoint", "replay", "replay status"])
def test_another_merchants_resend_and_replay_answer_as_unknown_ids(client, store, action):
    mine, [my_endpoint] = merchant_with_endpoints(store, "https://shop.example/mine")
    theirs, [their_endpoint] = merchant_with_endpoints(store, "https://shop.example/theirs")
    post_stk(client, theirs, "x")
    admin = api_key(store)
    [their_event] = [e["id"] for e in client.get(f"/v1/events?merchant_id={theirs.id}", headers=admin)
                     .get_json()["data"]]
    since = {"since": "2026-01-01T00:00:00Z"}
    their_replay = client.post(f"/v1/endpoints/{their_endpoint.id}/replay", json=since, headers=admin).get_json()
    key = api_key(store, mine.id)
    theirs_call, unknown_call = {
        "resend": (("post", f"/v1/events/{their_event}/resend", None), ("post", "/v1/events/evt_00/resend", None)),
        "resend to an endpoint": (("post", f"/v1/events/{their_event}/resend", {"endpoint_id": my_endpoint.id}),
                                  ("post", "/v1/events/evt_00/resend", {"endpoint_id": my_endpoint.id})),
        "replay": (("post", f"/v1/endpoints/{their_endpoint.id}/replay", since),
                   ("post", "/v1/endpoints/ep_00/replay", since)),
        "replay status": (("get", f"/v1/replays/{their_replay['id']}", None), ("get", "/v1/replays/rpl_00", None)),
    }[action]
    answers = [getattr(client, method)(path, json=body, headers=key) for method, path, body in (theirs_call,
                                                                                                unknown_call)]
    assert [a.status_code for a in answers] == [404, 404]
    assert answers[0].get_json()["error"]["code"] == answers[1].get_json()["error"]["code"] == "not_found"
    assert answers[0].get_json()["error"]["message"].split(" ")[:2] == \
        answers[1].get_json()["error"]["message"].split(" ")[:2]
    assert actions(store) == ["replay"]  # the admin's only


def test_the_sweeper_finishes_a_replay_whose_worker_died_holding_it(client, store, receiver, delivery_worker):
    """A replay claimed by a worker that died (lease run out, no message left): the running workers finish it."""
    merchant, [endpoint] = merchant_with_endpoints(store, receiver.url)
    since = utcnow() - dt.timedelta(seconds=1)
    for i in range(3):
        post_stk(client, merchant, f"s{i}")
    with store.write() as session:
        session.execute(Delivery.__table__.delete())
        replay, _ = replays.start(session, session.get(type(endpoint), endpoint.id), since, None, None, False, "t")
        replay_id = replay.id
    now = utcnow()
    with store.write() as session:
        assert session.execute(jobs.claiming(Replay, replay_id, now, now)).rowcount == 1
    delivery_worker()
    receiver.wait_for(3)
    key = api_key(store, merchant.id)
    done = wait_until(lambda: (r := client.get(f"/v1/replays/{replay_id}", headers=key).get_json())["state"]
                      == "done" and r, what="the replay finished by the sweeper's message")
    assert (done["events_scanned"], done["deliveries_created"]) == (3, 3)
