"""The console's Send test event button: through the real delivery-worker, the outcome flashed, scoped."""

from __future__ import annotations

import html

from sqlalchemy import select

from factories import merchant_with_endpoints
from payhook_shared.store import AuditEntry
from payhook_webhook.auth import create_api_key
from support import Receiver, csrf_token


def _signed_in(app, merchant_id):
    _, key = create_api_key(app.extensions["payhook.store"], merchant_id, "shop")
    client = app.test_client()
    token = csrf_token(client.get("/console/login").get_data(as_text=True))
    assert client.post("/console/login", data={"api_key": key, "csrf_token": token}).status_code == 302
    return client


def test_the_button_sends_a_test_and_shows_the_outcome(console_app, receiver, delivery_worker):
    store = console_app.extensions["payhook.store"]
    refusing = Receiver().start()
    refusing.respond = lambda req: (401, {}, b"bad signature")
    try:
        merchant, [working, failing] = merchant_with_endpoints(store, receiver.url, refusing.url)
        delivery_worker()
        client = _signed_in(console_app, merchant.id)
        page = client.get("/console/endpoints").get_data(as_text=True)
        assert "Send test event" in page and '<option value="mpesa.c2b.confirmation">' in page
        token = csrf_token(page)
        done = client.post(f"/console/endpoints/{working.id}/test", data={"type": "mpesa.c2b.confirmation",
                                                                          "csrf_token": token},
                           follow_redirects=True).get_data(as_text=True)
        assert f"Test mpesa.c2b.confirmation delivered to {working.id}: HTTP 200" in html.unescape(done)
        assert receiver.received[0].json()["test"] is True
        failed = client.post(f"/console/endpoints/{failing.id}/test", data={"type": "mpesa.stk_push",
                                                                            "csrf_token": token},
                             follow_redirects=True).get_data(as_text=True)
        assert f"Test mpesa.stk_push to {failing.id} failed: auth (HTTP 401)" in html.unescape(failed)
        with store.read() as session:
            assert session.scalars(select(AuditEntry.action).where(
                AuditEntry.action == "test_endpoint")).all() == ["test_endpoint"] * 2
    finally:
        refusing.stop()


def test_another_merchants_endpoint_cannot_be_tested(console_app, receiver):
    store = console_app.extensions["payhook.store"]
    mine, _ = merchant_with_endpoints(store, receiver.url)
    _, [theirs] = merchant_with_endpoints(store, receiver.url)
    client = _signed_in(console_app, mine.id)
    token = csrf_token(client.get("/console/endpoints").get_data(as_text=True))
    response = client.post(f"/console/endpoints/{theirs.id}/test", data={"type": "mpesa.stk_push",
                                                                         "csrf_token": token})
    assert response.status_code == 404 and receiver.received == []
