"""GET /v1/events and what became of them: filters, detail, deliveries, attempts, endpoint stats, merchant scope.

Black-box: callbacks posted to the running app, delivered by the real delivery worker to real receivers.
"""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from factories import api_key, callback_url, fixture_bytes, merchant_with_endpoints, stk_url
from payhook_shared.store import Delivery
from support import Receiver, wait_until

CHECKOUT = "ws_CO_191220191020363925"
RECEIPT = "NLJ7RT61SV"


def stk_body(tag: str = "") -> bytes:
    body = fixture_bytes("mpesa/stk_success.json")
    if tag:
        body = body.replace(CHECKOUT.encode(), f"ws_CO_{tag}".encode()).replace(RECEIPT.encode(), f"R{tag}".encode())
    return body


def post_stk(client, merchant, tag: str = "") -> None:
    assert client.post(stk_url(merchant), data=stk_body(tag), content_type="application/json").status_code == 200


def states(store) -> list[str]:
    with store.read() as session:
        return sorted(session.scalars(select(Delivery.state)))


def ids_of(client, path: str, headers) -> list[str]:
    response = client.get(path, headers=headers)
    assert response.status_code == 200, response.get_json()
    return [e["id"] for e in response.get_json()["data"]]


def test_a_callback_is_found_by_its_keys_and_shows_raw_and_attempts(client, store, receiver, delivery_worker):
    merchant, [endpoint] = merchant_with_endpoints(store, receiver.url)
    delivery_worker()
    post_stk(client, merchant)
    receiver.wait_for(1)
    wait_until(lambda: states(store) == ["done"], what="delivered")
    key = api_key(store, merchant.id)
    [event_id] = ids_of(client, f"/v1/events?reference={CHECKOUT}", key)
    assert ids_of(client, f"/v1/events?receipt={RECEIPT}", key) == [event_id]
    assert ids_of(client, "/v1/events?phone_suffix=4149", key) == [event_id]
    assert ids_of(client, "/v1/events?phone_suffix=254708374149", key) == [event_id]
    assert ids_of(client, "/v1/events?delivery=delivered", key) == [event_id]
    assert ids_of(client, "/v1/events?type=mpesa.stk_push&status=succeeded&provider=mpesa", key) == [event_id]
    for miss in ("reference=ws_CO_other", "receipt=NOPE", "phone_suffix=9999", "delivery=dead", "delivery=failing",
                 "delivery=undelivered", "type=mpesa.b2c", "since=2099-01-01T00:00:00Z",
                 "until=2000-01-01T00:00:00Z", f"bill_ref={CHECKOUT}"):
        assert ids_of(client, f"/v1/events?{miss}", key) == [], miss

    [summary] = client.get(f"/v1/events?reference={CHECKOUT}", headers=key).get_json()["data"]
    assert (summary["delivery_status"], summary["amount"], summary["currency"]) == ("delivered", "1.00", "KES")

    detail = client.get(f"/v1/events/{event_id}", headers=key).get_json()
    assert detail["raw_payload"] == stk_body().decode()
    assert detail["data"]["reference"] == CHECKOUT and detail["data"]["receipt"] == RECEIPT
    assert detail["data"] == json.loads(receiver.received[0].body)["data"]
    assert detail["delivery_status"] == "delivered"
    [delivery] = detail["deliveries"]
    assert (delivery["endpoint_id"], delivery["state"]) == (endpoint.id, "done")
    [attempt] = delivery["attempt_log"]
    assert (attempt["category"], attempt["status_code"], attempt["response_snippet"]) == ("success", 200,
                                                                                          '{"ok":true}')
    assert client.get(f"/v1/events/{event_id}/deliveries", headers=key).get_json()["data"][0]["id"] == delivery["id"]
    attempts = client.get(f"/v1/deliveries/{delivery['id']}/attempts", headers=key).get_json()["data"]
    assert [a["id"] for a in attempts] == [attempt["id"]] and attempts[0]["duration_ms"] >= 0


def test_an_event_whose_endpoint_fails_is_found_as_dead(client, store, receiver, delivery_worker):
    receiver.respond = lambda req: (500, {}, b"down")
    merchant, [endpoint] = merchant_with_endpoints(store, receiver.url)
    delivery_worker(retry_schedule=(0.05,), circuit_threshold=100)
    post_stk(client, merchant, "dead1")
    wait_until(lambda: states(store) == ["dead"], what="a dead letter")
    key = api_key(store, merchant.id)
    [event_id] = ids_of(client, "/v1/events?delivery=dead", key)
    assert ids_of(client, "/v1/events?reference=ws_CO_dead1&delivery=dead", key) == [event_id]
    assert ids_of(client, "/v1/events?delivery=delivered", key) == []
    assert client.get("/v1/events", headers=key).get_json()["data"][0]["delivery_status"] == "dead"
    detail = client.get(f"/v1/events/{event_id}", headers=key).get_json()
    assert detail["delivery_status"] == "dead"
    log = detail["deliveries"][0]["attempt_log"]
    assert [(a["number"], a["category"], a["status_code"], a["response_snippet"]) for a in log] == [
        (1, "server_error", 500, "down"), (2, "server_error", 500, "down")]

    failures = client.get(f"/v1/endpoints/{endpoint.id}/attempts?outcome=failure", headers=key).get_json()
    assert [a["number"] for a in failures["data"]] == [2, 1]
    assert client.get(f"/v1/endpoints/{endpoint.id}/attempts?outcome=success", headers=key).get_json()["data"] == []
    first = client.get(f"/v1/endpoints/{endpoint.id}/attempts?limit=1", headers=key).get_json()
    assert first["has_more"] is True and [a["number"] for a in first["data"]] == [2]
    rest = client.get(f"/v1/endpoints/{endpoint.id}/attempts?limit=1&after={first['next_after']}",
                      headers=key).get_json()
    assert rest["has_more"] is False and [a["number"] for a in rest["data"]] == [1]

    stats = client.get(f"/v1/endpoints/{endpoint.id}/stats", headers=key).get_json()
    for window in ("hour", "day"):
        assert stats["windows"][window]["attempts"] == 2
        assert stats["windows"][window]["success_rate"] == 0.0
        assert stats["windows"][window]["last_success_at"] is None
        assert stats["windows"][window]["p95_ms"] >= stats["windows"][window]["p50_ms"] >= 0
    assert stats["circuit"]["state"] == "closed" and stats["circuit"]["consecutive_failures"] == 2
    assert stats["deliveries_waiting"] == 0


def test_filters_by_bill_ref_and_c2b_trans_id(client, store, receiver, delivery_worker):
    merchant, _ = merchant_with_endpoints(store, receiver.url)
    payload = json.loads(fixture_bytes("mpesa/c2b_confirmation_plain.json"))
    assert client.post(callback_url(merchant, "c2b-confirmation"), json=payload).status_code == 200
    key = api_key(store, merchant.id)
    [event_id] = ids_of(client, f"/v1/events?reference={payload['TransID']}", key)
    assert ids_of(client, f"/v1/events?bill_ref={payload['BillRefNumber']}", key) == [event_id]
    assert ids_of(client, "/v1/events?delivery=undelivered", key) == [event_id]


def test_pages_newest_first_and_rejects_bad_filters(client, store):
    merchant, _ = merchant_with_endpoints(store)
    for i in range(3):
        post_stk(client, merchant, f"p{i}")
    key = api_key(store, merchant.id)
    first = client.get("/v1/events?limit=2", headers=key).get_json()
    rest = client.get(f"/v1/events?limit=2&after={first['next_after']}", headers=key).get_json()
    every = [e["id"] for e in first["data"] + rest["data"]]
    assert first["has_more"] is True and rest["has_more"] is False
    assert every == sorted(every, reverse=True) and len(set(every)) == 3
    for bad in ("delivery=lost", "phone_suffix=12ab", "since=yesterday", "limit=0"):
        response = client.get(f"/v1/events?{bad}", headers=key)
        assert response.status_code == 400, bad
        assert bad.split("=")[0] in response.get_json()["error"]["message"]


@pytest.mark.parametrize("path", [
    "/v1/events/{event}", "/v1/events/{event}/deliveries", "/v1/deliveries/{delivery}/attempts",
    "/v1/endpoints/{endpoint}/attempts", "/v1/endpoints/{endpoint}/stats", "/v1/endpoints/{endpoint}/replays",
])
def test_another_merchants_objects_answer_as_unknown_ones(client, store, path):
    mine, _ = merchant_with_endpoints(store)
    theirs, [their_endpoint] = merchant_with_endpoints(store, "https://shop.example/theirs")
    post_stk(client, theirs)
    with store.read() as session:
        delivery = session.scalar(select(Delivery))
    key = api_key(store, mine.id)
    theirs_path = path.format(event=delivery.event_id, delivery=delivery.id, endpoint=their_endpoint.id)
    unknown_path = path.format(event="evt_0000", delivery="dlv_0000", endpoint="ep_0000")
    answers = [client.get(p, headers=key) for p in (theirs_path, unknown_path)]
    assert [a.status_code for a in answers] == [404, 404]
    bodies = [a.get_json()["error"] for a in answers]
    assert bodies[0]["code"] == bodies[1]["code"] == "not_found"
    assert bodies[0]["message"].replace(theirs_path.split("/")[3], "ID") == \
        bodies[1]["message"].replace(unknown_path.split("/")[3], "ID")
    admin = api_key(store)
    assert client.get(theirs_path, headers=admin).status_code == 200


def test_a_merchant_key_lists_only_its_own_events(client, store):
    mine, _ = merchant_with_endpoints(store)
    theirs, _ = merchant_with_endpoints(store)
    post_stk(client, mine, "mine")
    post_stk(client, theirs, "theirs")
    key = api_key(store, mine.id)
    assert len(ids_of(client, "/v1/events", key)) == 1
    assert ids_of(client, "/v1/events?reference=ws_CO_theirs", key) == []
    assert client.get(f"/v1/events?merchant_id={theirs.id}", headers=key).status_code == 404
    admin = api_key(store)
    assert len(ids_of(client, "/v1/events", admin)) == 2
    assert len(ids_of(client, f"/v1/events?merchant_id={theirs.id}", admin)) == 1


def test_stats_of_a_healthy_endpoint(client, store, delivery_worker):
    receiver = Receiver().start()
    try:
        merchant, [endpoint] = merchant_with_endpoints(store, receiver.url)
        delivery_worker()
        for i in range(3):
            post_stk(client, merchant, f"ok{i}")
        wait_until(lambda: states(store) == ["done"] * 3, what="delivered")
        stats = client.get(f"/v1/endpoints/{endpoint.id}/stats", headers=api_key(store)).get_json()
        hour = stats["windows"]["hour"]
        assert (hour["attempts"], hour["succeeded"], hour["success_rate"]) == (3, 3, 100.0)
        assert hour["last_success_at"] is not None and hour["p50_ms"] is not None
    finally:
        receiver.stop()
