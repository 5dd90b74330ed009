"""The console's quarantine page: a merchant sees its own quarantined callbacks, reads the body, reprocesses."""

from __future__ import annotations

import html

from sqlalchemy import select

from factories import callback_url, merchant_with_endpoints
from payhook_shared.store import AuditEntry, QuarantinedCallback
from payhook_webhook.auth import create_api_key
from support import csrf_token

INVALID = b'{"Body": {"stkCallback": {"ResultCode": "<script>alert(1)</script>"}}}'


def sign_in(client, key: str):
    return client.post("/console/login", data={"api_key": key, "csrf_token": csrf_token(
        client.get("/console/login").get_data(as_text=True))})


def test_a_merchant_sees_and_reprocesses_its_quarantined_callbacks(console_app):
    store = console_app.extensions["payhook.store"]
    merchant, _ = merchant_with_endpoints(store, "http://127.0.0.1:9/a")
    other, _ = merchant_with_endpoints(store, "http://127.0.0.1:9/b")
    client = console_app.test_client()
    for owner in (merchant, other):
        client.post(callback_url(owner, "stk"), data=INVALID, content_type="application/json")
    with store.read() as session:
        mine, theirs = (session.scalars(select(QuarantinedCallback.id).where(QuarantinedCallback.merchant_id == m.id))
                        .one() for m in (merchant, other))
    _, key = create_api_key(store, merchant.id, "shop")
    sign_in(client, key)

    page = client.get("/console/quarantine").get_data(as_text=True)
    assert mine in page and theirs not in page
    assert client.get(f"/console/quarantine/{theirs}").status_code == 404
    detail = client.get(f"/console/quarantine/{mine}").get_data(as_text=True)
    # The body is shown escaped, never as markup.
    assert "<script>alert(1)</script>" not in detail and html.escape("<script>alert(1)</script>") in detail
    assert 'id="reprocess"' in detail

    response = client.post(f"/console/quarantine/{mine}/reprocess", data={"csrf_token": csrf_token(detail)})
    assert response.status_code == 302
    after = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "Still invalid:" in after
    with store.read() as session:
        assert session.get(QuarantinedCallback, mine).attempts == 1
        assert session.scalars(select(AuditEntry.action).where(AuditEntry.target == mine)).all() == ["reprocess"]
    assert client.post(f"/console/quarantine/{theirs}/reprocess", data={"csrf_token": csrf_token(detail)}).status_code == 404
