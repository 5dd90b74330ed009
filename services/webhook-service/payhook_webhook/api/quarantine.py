"""Quarantined callbacks: ``GET /v1/quarantine``, ``GET /v1/quarantine/<id>``, ``POST /v1/quarantine/<id>/reprocess``.

A merchant key sees and reprocesses its own merchant's only; another merchant's id is answered 404,
as an unknown one. Reprocessing runs the live callback path (see ``quarantine``).
"""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify

from payhook_shared.store import QuarantinedCallback

from .. import auth, quarantine
from ..errors import NotFound
from ..schemas import QuarantineQuerySchema, query

bp = Blueprint("quarantine", __name__, url_prefix="/v1")
bp.before_request(auth.require_api_key)


def _own(session, quarantine_id: str) -> QuarantinedCallback:
    row = session.get(QuarantinedCallback, quarantine_id)
    if row is None or not auth.may_see(row.merchant_id):
        raise NotFound(f"no quarantined callback {quarantine_id}")
    return row


@bp.get("/quarantine")
def list_quarantined():
    """Quarantined callbacks, newest first, keyset-paginated; ``state`` and (admin) ``merchant_id`` filter."""
    params = query(QuarantineQuerySchema())
    principal = auth.current_principal()
    merchant_id = params["merchant_id"]
    if not principal.is_admin:
        if merchant_id not in (None, principal.merchant_id):
            raise NotFound(f"no merchant {merchant_id}")
        merchant_id = principal.merchant_id
    with current_app.extensions["payhook.store"].read() as session:
        rows, next_after = quarantine.page(session, merchant_id, params["state"], params["after"], params["limit"])
        return jsonify(data=[quarantine.as_json(r) for r in rows], has_more=next_after is not None,
                       next_after=next_after)


@bp.get("/quarantine/<quarantine_id>")
def get_quarantined(quarantine_id: str):
    """One quarantined callback with its headers and raw body (as text when UTF-8, always as base64)."""
    with current_app.extensions["payhook.store"].read() as session:
        return jsonify(quarantine.as_json(_own(session, quarantine_id), with_body=True))


@bp.post("/quarantine/<quarantine_id>/reprocess")
def reprocess_quarantined(quarantine_id: str):
    """Validate and record the callback again: 200 with the row, ``resolved`` with its event or still quarantined."""
    with current_app.extensions["payhook.store"].read() as session:
        _own(session, quarantine_id)
    quarantine.reprocess(quarantine_id)
    with current_app.extensions["payhook.store"].read() as session:
        return jsonify(quarantine.as_json(_own(session, quarantine_id)))
