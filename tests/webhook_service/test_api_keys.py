"""API keys listed and revoked: ``/v1/api-keys`` (admin keys) and the ``list-api-keys``/``revoke-api-key`` commands.

Never the key itself in a list; a revoked key is refused by its next call.
The console's side (sessions a key opened) is in console/test_console_sessions.py.
"""

from __future__ import annotations

from sqlalchemy import select

from factories import merchant_with_endpoints
from payhook_shared.store import ApiKey, AuditEntry
from payhook_webhook.auth import create_api_key


def test_an_admin_lists_keys_without_their_secret(client, store):
    merchant, _ = merchant_with_endpoints(store)
    shop, shop_key = create_api_key(store, merchant.id, "shop backend")
    ops, admin = create_api_key(store, None, "ops")
    bearer = {"Authorization": f"Bearer {admin}"}
    shop_bearer = {"Authorization": f"Bearer {shop_key}"}
    assert client.get(f"/v1/merchants/{merchant.id}", headers=shop_bearer).status_code == 200
    response = client.get("/v1/api-keys", headers=bearer)
    assert response.status_code == 200
    body = response.get_json()
    assert shop_key not in response.get_data(as_text=True) and admin not in response.get_data(as_text=True)
    listed = {k["id"]: k for k in body["data"]}
    assert set(listed) == {shop.id, ops.id} and body["has_more"] is False
    assert listed[shop.id]["merchant_id"] == merchant.id and listed[ops.id]["merchant_id"] is None
    assert (listed[shop.id]["label"], listed[shop.id]["last4"]) == ("shop backend", shop_key[-4:])
    assert listed[shop.id]["last_used_at"] and listed[ops.id]["last_used_at"]  # both were used just now
    assert listed[shop.id]["revoked_at"] is None and listed[shop.id]["created_at"].endswith("Z")
    assert client.get("/v1/api-keys?limit=1", headers=bearer).get_json()["has_more"] is True


def test_a_revoked_key_is_refused_at_once_and_revoking_again_changes_nothing(client, store):
    merchant, _ = merchant_with_endpoints(store)
    shop, shop_key = create_api_key(store, merchant.id, "shop")
    _, admin = create_api_key(store, None, "ops")
    bearer = {"Authorization": f"Bearer {admin}"}
    first = client.delete(f"/v1/api-keys/{shop.id}", headers=bearer)
    assert first.status_code == 200 and first.get_json()["revoked_at"]
    assert client.get("/v1/merchants", headers={"Authorization": f"Bearer {shop_key}"}).status_code == 401
    again = client.delete(f"/v1/api-keys/{shop.id}", headers=bearer)
    assert again.status_code == 200 and again.get_json()["revoked_at"] == first.get_json()["revoked_at"]
    assert client.delete("/v1/api-keys/key_00", headers=bearer).status_code == 404
    with store.read() as session:
        assert session.scalars(select(AuditEntry.target).where(AuditEntry.action == "revoke_api_key")).all() == [
            shop.id]


def test_the_command_line_lists_and_revokes_keys(webhook_app, client, store):
    merchant, _ = merchant_with_endpoints(store)
    shop, shop_key = create_api_key(store, merchant.id, "shop backend")
    runner = webhook_app.test_cli_runner()
    listed = runner.invoke(args=["list-api-keys"])
    assert listed.exit_code == 0, listed.output
    assert shop.id in listed.stdout and "shop backend" in listed.stdout and shop_key[-4:] in listed.stdout
    assert shop_key not in listed.stdout

    revoked = runner.invoke(args=["revoke-api-key", shop.id])
    assert revoked.exit_code == 0 and f"revoked API key {shop.id}" in revoked.stdout
    assert client.get("/v1/merchants", headers={"Authorization": f"Bearer {shop_key}"}).status_code == 401
    assert "was revoked already" in runner.invoke(args=["revoke-api-key", shop.id]).stdout
    assert runner.invoke(args=["revoke-api-key", "key_00"]).exit_code != 0
    with store.read() as session:
        assert session.get(ApiKey, shop.id).revoked_at is not None
        entry = session.scalars(select(AuditEntry)).one()
    assert (entry.api_key_id, entry.action, entry.target) == ("cli", "revoke_api_key", shop.id)
