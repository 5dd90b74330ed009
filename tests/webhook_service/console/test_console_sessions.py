"""Console sessions live in the store: sign-out and key revocation end them on the server.

Through the Flask test client on both databases. A "copied cookie" is the
session cookie's value set on a second client, as an attacker who read it
would replay it.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select, update

from factories import merchant_with_endpoints
from payhook_shared.store import ApiKey, AuditEntry, ConsoleSession
from payhook_shared.store.models import utcnow
from payhook_webhook.auth import create_api_key
from support import csrf_token

COOKIE = "payhook_console"


def signed_in(app, key: str):
    """A test client signed in to the console with ``key``."""
    client = app.test_client()
    token = csrf_token(client.get("/console/login").get_data(as_text=True))
    response = client.post("/console/login", data={"api_key": key, "csrf_token": token})
    assert response.status_code == 302 and response.headers["Location"].endswith("/console/")
    return client


def copy_of(app, client):
    """A second client replaying ``client``'s session cookie."""
    replay = app.test_client()
    replay.set_cookie(COOKIE, client.get_cookie(COOKIE, path="/console").value, path="/console")
    return replay


def post(client, path: str, page: str = "/console/"):
    return client.post(path, data={"csrf_token": csrf_token(client.get(page).get_data(as_text=True))})


def test_a_copied_cookie_is_dead_after_sign_out(console_app):
    store = console_app.extensions["payhook.store"]
    _, key = create_api_key(store, None, "ops")
    client = signed_in(console_app, key)
    replay = copy_of(console_app, client)
    assert replay.get("/console/").status_code == 200  # the copy works while the session lives

    response = post(client, "/console/logout")
    assert response.status_code == 302 and response.headers["Location"].endswith("/console/login")
    for each in (client, replay):
        response = each.get("/console/")
        assert response.status_code == 302 and response.headers["Location"].endswith("/console/login")
    with store.read() as session:
        assert session.scalars(select(ConsoleSession)).all() == []
        assert session.scalars(select(AuditEntry.action).order_by(AuditEntry.id)).all() == ["sign_in", "sign_out"]


def test_the_store_keeps_the_session_but_not_its_token(console_app):
    store = console_app.extensions["payhook.store"]
    merchant, _ = merchant_with_endpoints(store, "https://shop.example/a")
    row, key = create_api_key(store, merchant.id, "shop")
    client = signed_in(console_app, key)
    with store.read() as session:
        [kept] = session.scalars(select(ConsoleSession)).all()
    assert (kept.api_key_id, kept.merchant_id, kept.sign_in_link_id) == (row.id, merchant.id, None)
    assert kept.created_at <= kept.last_seen_at < kept.expires_at
    assert dt.timedelta(hours=7, minutes=59) < kept.expires_at - kept.created_at <= dt.timedelta(hours=8)
    cookie = client.get_cookie(COOKIE, path="/console").value
    assert kept.token_hash not in cookie and key not in cookie


def test_an_expired_session_is_refused(console_app):
    store = console_app.extensions["payhook.store"]
    _, key = create_api_key(store, None, "ops")
    client = signed_in(console_app, key)
    with store.write() as session:
        session.execute(update(ConsoleSession).values(expires_at=utcnow() - dt.timedelta(seconds=1)))
    assert client.get("/console/").status_code == 302


def test_revoking_a_key_in_the_api_ends_its_api_calls_and_its_console_session(console_app):
    store = console_app.extensions["payhook.store"]
    merchant, _ = merchant_with_endpoints(store, "https://shop.example/a")
    row, key = create_api_key(store, merchant.id, "shop")
    ops, admin = create_api_key(store, None, "ops")
    api = console_app.test_client()
    bearer = {"Authorization": f"Bearer {key}"}
    assert api.get(f"/v1/merchants/{merchant.id}", headers=bearer).status_code == 200
    console = signed_in(console_app, key)
    replay = copy_of(console_app, console)
    other = signed_in(console_app, admin)

    response = api.delete(f"/v1/api-keys/{row.id}", headers={"Authorization": f"Bearer {admin}"})
    assert response.status_code == 200 and response.get_json()["revoked_at"]
    refused = api.get(f"/v1/merchants/{merchant.id}", headers=bearer)
    assert refused.status_code == 401 and refused.get_json()["error"]["message"] == "API key revoked"
    assert console.get("/console/").status_code == 302
    assert replay.get("/console/").status_code == 302
    assert other.get("/console/").status_code == 200  # another key's session goes on
    with store.read() as session:
        assert session.scalars(select(ConsoleSession.api_key_id)).all() == [ops.id]  # the revoked key's are gone
        entry = session.scalars(select(AuditEntry).where(AuditEntry.action == "revoke_api_key")).one()
    assert (entry.target, entry.merchant_id, entry.details) == (row.id, None, {"key_merchant_id": merchant.id})


def test_an_operator_lists_and_revokes_keys_in_the_console(console_app):
    store = console_app.extensions["payhook.store"]
    merchant, _ = merchant_with_endpoints(store, "https://shop.example/a")
    row, key = create_api_key(store, merchant.id, "shop backend")
    _, admin = create_api_key(store, None, "ops")
    victim = signed_in(console_app, key)
    operator = signed_in(console_app, admin)

    page = operator.get("/console/api-keys").get_data(as_text=True)
    assert row.id in page and "shop backend" in page and f"…{key[-4:]}" in page
    assert key not in page and admin not in page
    response = post(operator, f"/console/api-keys/{row.id}/revoke", "/console/api-keys")
    assert response.status_code == 302
    assert "revoked: it is refused from now on" in operator.get("/console/api-keys").get_data(as_text=True)
    assert victim.get("/console/").status_code == 302
    api = console_app.test_client()
    assert api.get("/v1/merchants", headers={"Authorization": f"Bearer {key}"}).status_code == 401
    with store.read() as session:
        assert session.get(ApiKey, row.id).revoked_at is not None
        assert session.scalars(select(AuditEntry.target).where(AuditEntry.action == "revoke_api_key")).all() == [
            row.id]


def test_a_merchant_cannot_list_or_revoke_keys(console_app):
    store = console_app.extensions["payhook.store"]
    merchant, _ = merchant_with_endpoints(store, "https://shop.example/a")
    mine, key = create_api_key(store, merchant.id, "shop")
    admin_row, _ = create_api_key(store, None, "ops")
    bearer = {"Authorization": f"Bearer {key}"}
    api = console_app.test_client()
    assert api.get("/v1/api-keys", headers=bearer).status_code == 403
    for target in (admin_row.id, mine.id):
        assert api.delete(f"/v1/api-keys/{target}", headers=bearer).status_code == 403
    console = signed_in(console_app, key)
    assert console.get("/console/api-keys").status_code == 403
    assert "API keys" not in console.get("/console/").get_data(as_text=True)
    for target in (admin_row.id, mine.id):
        assert post(console, f"/console/api-keys/{target}/revoke").status_code == 403
    with store.read() as session:
        assert session.scalars(select(ApiKey.revoked_at)).all() == [None, None]
        assert session.scalars(select(AuditEntry.action)).all() == ["sign_in"]
