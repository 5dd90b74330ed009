"""Dead letters round trip through the API: dead → list → bulk retry → delivered; recover; scope; purge."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select

from factories import api_key, fixture_bytes, merchant_with_endpoints, stk_url
from payhook_shared.store import Delivery
from support import wait_until


def post_payments(client, merchant, n: int, tag: str = "a") -> None:
    for i in range(n):
        body = fixture_bytes("mpesa/stk_success.json").replace(b"ws_CO_191220191020363925", f"ws_{tag}{i}".encode())
        assert client.post(stk_url(merchant), data=body, content_type="application/json").status_code == 200


def states(store) -> list[str]:
    with store.read() as session:
        return sorted(session.scalars(select(Delivery.state)))


def test_dead_letters_round_trip_through_the_api(client, store, receiver, delivery_worker):
    receiver.respond = lambda req: (500, {}, b"broken")
    merchant, [endpoint] = merchant_with_endpoints(store, receiver.url)
    delivery_worker(retry_schedule=(), circuit_threshold=100)
    post_payments(client, merchant, 3)
    wait_until(lambda: states(store) == ["dead"] * 3, what="three dead letters")
    admin = api_key(store)

    page = client.get(f"/v1/dead-letters?endpoint_id={endpoint.id}&limit=2", headers=admin).get_json()
    assert len(page["data"]) == 2 and page["has_more"] is True
    rest = client.get(f"/v1/dead-letters?endpoint_id={endpoint.id}&after={page['next_after']}",
                      headers=admin).get_json()
    assert len(rest["data"]) == 1 and rest["has_more"] is False
    one = page["data"][0]
    assert (one["state"], one["last_category"], one["last_status"]) == ("dead", "server_error", 500)
    detail = client.get(f"/v1/deliveries/{one['id']}", headers=admin).get_json()
    assert detail["attempt_log"][0]["response_snippet"] == "broken"
    assert client.get("/v1/dead-letters?category=timeout", headers=admin).get_json()["data"] == []

    receiver.respond = lambda req: (200, {}, b"")
    response = client.post("/v1/dead-letters/retry", json={"merchant_id": merchant.id}, headers=admin)
    assert response.get_json() == {"retried": 3}
    wait_until(lambda: states(store) == ["done"] * 3, what="delivered after the bulk retry")
    assert client.post(f"/v1/deliveries/{one['id']}/retry", headers=admin).get_json() == {"retried": 0}


def test_recover_and_purge(client, store, receiver, delivery_worker):
    receiver.respond = lambda req: (500, {}, b"")
    merchant, [endpoint] = merchant_with_endpoints(store, receiver.url)
    delivery_worker(retry_schedule=(), circuit_threshold=100)
    post_payments(client, merchant, 2)
    wait_until(lambda: states(store) == ["dead"] * 2, what="dead letters")
    admin = api_key(store)
    assert client.post("/v1/dead-letters/purge", json={}, headers=admin).status_code == 400
    receiver.respond = lambda req: (200, {}, b"")
    since = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=1)).isoformat()
    response = client.post(f"/v1/endpoints/{endpoint.id}/recover", json={"since": since}, headers=admin)
    assert response.get_json() == {"recovered": 2}
    wait_until(lambda: states(store) == ["done"] * 2, what="recovered")

    receiver.respond = lambda req: (500, {}, b"")
    post_payments(client, merchant, 1, tag="b")
    wait_until(lambda: states(store).count("dead") == 1, what="another dead letter")
    assert client.post("/v1/dead-letters/purge", json={"confirm": True}, headers=admin).get_json() == {"purged": 1}
    assert states(store) == ["done", "done"]


def test_a_merchant_key_sees_only_its_own_dead_letters(client, store, receiver, delivery_worker):
    receiver.respond = lambda req: (500, {}, b"")
    mine, _ = merchant_with_endpoints(store, receiver.url)
    theirs, [their_endpoint] = merchant_with_endpoints(store, receiver.url)
    delivery_worker(retry_schedule=(), circuit_threshold=100)
    post_payments(client, mine, 1, tag="m")
    post_payments(client, theirs, 1, tag="t")
    wait_until(lambda: states(store) == ["dead"] * 2, what="dead letters")
    key = api_key(store, mine.id)
    listed = client.get("/v1/dead-letters", headers=key).get_json()["data"]
    assert [d["merchant_id"] for d in listed] == [mine.id]
    with store.read() as session:
        their_delivery = session.scalar(select(Delivery.id).where(Delivery.merchant_id == theirs.id))
    assert client.get(f"/v1/deliveries/{their_delivery}", headers=key).status_code == 404
    assert client.post(f"/v1/deliveries/{their_delivery}/retry", headers=key).status_code == 404
    assert client.get(f"/v1/dead-letters?merchant_id={theirs.id}", headers=key).status_code == 404
    assert client.post("/v1/dead-letters/retry", json={}, headers=key).get_json() == {"retried": 1}
    since = {"since": "2020-01-01T00:00:00Z"}
    assert client.post(f"/v1/endpoints/{their_endpoint.id}/recover", json=since, headers=key).status_code == 404
    assert client.get("/v1/dead-letters").status_code == 401


def test_priority_test_endpoint_needs_an_admin_key(client, store):
    merchant, _ = merchant_with_endpoints(store, "https://shop.example/hook")
    assert client.post(f"/test/priority/{merchant.id}/urgent", headers=api_key(store, merchant.id)).status_code == 403
    admin = api_key(store)
    assert client.post(f"/test/priority/{merchant.id}/soon", headers=admin).status_code == 400
    response = client.post(f"/test/priority/{merchant.id}/urgent", json={"count": 3}, headers=admin)
    assert response.status_code == 200
    events = response.get_json()["events"]
    assert len(events) == 3 and all(e["id"].startswith("evt_") for e in events)
    with store.read() as session:
        assert sorted(session.scalars(select(Delivery.priority))) == [0, 0, 0]
