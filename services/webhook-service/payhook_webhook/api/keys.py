"""API keys: ``GET /v1/api-keys`` lists them, ``DELETE /v1/api-keys/<id>`` revokes one (admin keys only).

A key is listed by its id, merchant, label, last four characters and when it
was created, last used and revoked; the key itself is never shown after it is
created. Revoking refuses the key from the next call on, deletes every console
session it opened, and is recorded in the audit log.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, jsonify
from sqlalchemy import select

from payhook_shared.store import ApiKey

from .. import auth
from ..services.common import iso
from ..services.keys import revoke
from .paging import requested_page

bp = Blueprint("api_keys", __name__, url_prefix="/v1")
bp.before_request(auth.require_api_key)


def key_json(key: ApiKey) -> dict[str, Any]:
    """An API key as the API shows it: never the key, only its last four characters."""
    return {
        "id": key.id,
        "merchant_id": key.merchant_id,
        "label": key.label,
        "last4": key.hint or None,
        "created_at": iso(key.created_at),
        "last_used_at": iso(key.last_used_at),
        "revoked_at": iso(key.revoked_at),
    }


def _store():
    return current_app.extensions["payhook.store"]


@bp.get("/api-keys")
def list_keys():
    """Every API key, admin and merchant, revoked ones included (admin only)."""
    auth.require_admin()
    with _store().read() as session:
        return jsonify(requested_page(session, select(ApiKey), ApiKey.id, key_json))


@bp.delete("/api-keys/<key_id>")
def revoke_key(key_id: str):
    """Revoke a key at once and end the console sessions it opened (admin only); repeating it changes nothing."""
    principal = auth.require_admin()
    with _store().write() as session:
        key, _ = revoke(session, principal, key_id)
        return jsonify(key_json(key))
