"""The console's Resend button (event page) and Replay form (endpoint page): CSRF-guarded, audited, scoped."""

from __future__ import annotations


import pytest
from sqlalchemy import select

from factories import fixture_bytes, merchant_with_endpoints, stk_url
from payhook_shared.store import AuditEntry, Delivery, Event
from payhook_webhook.auth import create_api_key
from support import Receiver, csrf_token, wait_until


@pytest.fixture
def console_app(console_app_with):
    return console_app_with(endpoint_allowlist=("127.0.0.0/8",))


def signed_in(app, merchant_id: str | None):
    _, key = create_api_key(app.extensions["payhook.store"], merchant_id, "console")
    client = app.test_client()
    token = csrf_token(client.get("/console/login").get_data(as_text=True))
    assert client.post("/console/login", data={"api_key": key, "csrf_token": token}).status_code == 302
    return client


def post_stk(client, merchant, tag: str) -> None:
    body = fixture_bytes("mpesa/stk_success.json").replace(b"ws_CO_191220191020363925", f"ws_CO_{tag}".encode())
    assert client.post(stk_url(merchant), data=body, content_type="application/json").status_code == 200


def test_resend_button_delivers_the_event_again(console_app, receiver, delivery_worker):
    store = console_app.extensions["payhook.store"]
    merchant, _ = merchant_with_endpoints(store, receiver.url)
    delivery_worker()
    post_stk(console_app.test_client(), merchant, "c1")
    [first] = receiver.wait_for(1)
    client = signed_in(console_app, merchant.id)
    event_id = first.headers["webhook-id"]
    page = client.get(f"/console/events/{event_id}").get_data(as_text=True)
    assert 'id="resend-form"' in page
    assert client.post(f"/console/events/{event_id}/resend", data={}).status_code == 403
    response = client.post(f"/console/events/{event_id}/resend", data={"csrf_token": csrf_token(page)})
    assert response.status_code == 302
    second = receiver.wait_for(2)[1]
    assert second.headers["webhook-id"] == event_id
    with store.read() as session:
        assert list(session.scalars(select(AuditEntry.action))) == ["sign_in", "resend_event"]


def test_replay_form_delivers_the_range_to_a_new_endpoint(console_app, receiver, delivery_worker):
    store = console_app.extensions["payhook.store"]
    merchant, _ = merchant_with_endpoints(store, receiver.url)
    delivery_worker()
    for i in range(3):
        post_stk(console_app.test_client(), merchant, f"cr{i}")
    receiver.wait_for(3)
    late = Receiver().start()
    try:
        _, [endpoint] = merchant_with_endpoints(store, late.url)
        with store.write() as session:
            session.get(type(endpoint), endpoint.id).merchant_id = merchant.id
        client = signed_in(console_app, merchant.id)
        page = client.get(f"/console/endpoints/{endpoint.id}").get_data(as_text=True)
        assert 'id="replay-form"' in page and "No replays yet." in page
        form = {"csrf_token": csrf_token(page), "since": "2000-01-01", "types": "mpesa.stk_push"}
        assert client.post(f"/console/endpoints/{endpoint.id}/replay", data={**form, "csrf_token": "x"}
                           ).status_code == 403
        assert client.post(f"/console/endpoints/{endpoint.id}/replay", data=form).status_code == 302
        late.wait_for(3)
        wait_until(lambda: ">done<" in client.get(f"/console/endpoints/{endpoint.id}").get_data(as_text=True),
                   what="the replay shown done")
        with store.read() as session:
            assert sorted(r.headers["webhook-id"] for r in late.received) == sorted(session.scalars(select(Event.id)))
            assert "replay" in session.scalars(select(AuditEntry.action)).all()
    finally:
        late.stop()


def test_another_merchants_event_and_endpoint_answer_404(console_app):
    store = console_app.extensions["payhook.store"]
    mine, _ = merchant_with_endpoints(store, "https://shop.example/mine")
    theirs, [their_endpoint] = merchant_with_endpoints(store, "https://shop.example/theirs")
    post_stk(console_app.test_client(), theirs, "t")
    with store.read() as session:
        their_event = session.scalar(select(Delivery.event_id))
    client = signed_in(console_app, mine.id)
    token = csrf_token(client.get("/console/events").get_data(as_text=True))
    for path in (f"/console/endpoints/{their_endpoint.id}", "/console/endpoints/ep_unknown"):
        assert client.get(path).status_code == 404, path
    for path, data in ((f"/console/events/{their_event}/resend", {}), ("/console/events/evt_unknown/resend", {}),
                       (f"/console/endpoints/{their_endpoint.id}/replay", {"since": "2000-01-01"}),
                       ("/console/endpoints/ep_unknown/replay", {"since": "2000-01-01"})):
        assert client.post(path, data={"csrf_token": token, **data}).status_code == 404, path
