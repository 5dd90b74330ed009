"""Daraja through Payhook: credentials, STK Push and payment intents.

- ``PUT/GET/DELETE /v1/merchants/<id>/daraja-credentials``: set (write-only), see which fields are set, remove.
- ``POST /v1/mpesa/stk-push``: Payhook asks Daraja to prompt the customer, with the merchant's own
  Payhook STK callback URL, records a pending payment intent and answers with Daraja's ids.
- ``POST /v1/mpesa/intents``: register an STK Push the merchant made itself, so Payhook follows it.
- ``GET /v1/mpesa/intents`` and ``/v1/mpesa/intents/<id>``: list (filtered) and read intents.

A merchant key acts on its own merchant only; an admin key names the merchant (``merchant_id``).
Credentials are never answered back, only which of their fields are set.
"""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify

from payhook_shared.store import PaymentIntent

from .. import auth
from ..errors import InvalidPayload, NotFound
from ..schemas import (
    DarajaCredentialsSchema, IntentQuerySchema, IntentRegisterSchema, StkPushSchema, json_body, load, query,
)
from ..services import daraja
from ..services.common import page
from ..services.merchants import visible_merchant

bp = Blueprint("mpesa", __name__, url_prefix="/v1")
bp.before_request(auth.require_api_key)


def _store():
    return current_app.extensions["payhook.store"]


def _merchant_id(requested: str | None) -> str:
    """The merchant the call acts for: a merchant key's own, or the one an admin key names."""
    principal = auth.current_principal()
    if principal.is_admin:
        if requested is None:
            raise InvalidPayload("merchant_id: is required with an admin API key",
                                 {"merchant_id": ["is required with an admin API key"]})
        with _store().read() as session:
            return visible_merchant(session, requested).id
    if requested is not None and requested != principal.merchant_id:
        raise NotFound(f"no merchant {requested}")
    return principal.merchant_id


@bp.put("/merchants/<merchant_id>/daraja-credentials")
def put_credentials(merchant_id: str):
    """Set the merchant's Daraja credentials (encrypted at rest); the answer says which fields are set, never them."""
    _, payload = json_body()
    with _store().write() as session:
        # Another merchant's id answers as an unknown one would, whatever the body.
        merchant = visible_merchant(session, merchant_id)
        body = load(DarajaCredentialsSchema(), payload)
        row = daraja.set_credentials(session, auth.current_principal(), merchant, body)
        return jsonify(daraja.credentials_summary(row))


@bp.get("/merchants/<merchant_id>/daraja-credentials")
def get_credentials(merchant_id: str):
    """Whether the merchant has Daraja credentials: environment, shortcode and which secret fields are set."""
    with _store().read() as session:
        merchant = visible_merchant(session, merchant_id)
        return jsonify(daraja.credentials_summary(daraja.stored_credentials(session, merchant.id)))


@bp.delete("/merchants/<merchant_id>/daraja-credentials")
def delete_credentials(merchant_id: str):
    """Remove the merchant's Daraja credentials: 204, or 404 when it had none."""
    with _store().write() as session:
        merchant = visible_merchant(session, merchant_id)
        if not daraja.delete_credentials(session, auth.current_principal(), merchant):
            raise NotFound(f"merchant {merchant_id} has no Daraja credentials")
    return "", 204


def _intent_answer(intent, created: bool):
    return jsonify(daraja.intent_json(intent)), 201 if created else 200


@bp.post("/mpesa/stk-push")
def stk_push():
    """Ask Daraja for an STK Push: 201 with the new intent, 200 with the first one for a repeated idempotency key."""
    _, payload = json_body()
    body = load(StkPushSchema(), payload)
    intent, created = daraja.stk_push(_store(), _merchant_id(body["merchant_id"]), body)
    return _intent_answer(intent, created)


@bp.post("/mpesa/intents")
def register_intent():
    """Register an STK Push the merchant made: 201 with its intent, 200 when that CheckoutRequestID was registered."""
    _, payload = json_body()
    body = load(IntentRegisterSchema(), payload)
    intent, created = daraja.register_intent(_store(), _merchant_id(body["merchant_id"]), body)
    return _intent_answer(intent, created)


@bp.get("/mpesa/intents")
def list_intents():
    """Payment intents, oldest first, keyset-paginated; filtered by state, source, ids, reference and time."""
    params = query(IntentQuerySchema())
    principal = auth.current_principal()
    if not principal.is_admin:
        if params["merchant_id"] not in (None, principal.merchant_id):
            raise NotFound(f"no merchant {params['merchant_id']}")
        params["merchant_id"] = principal.merchant_id
    with _store().read() as session:
        return jsonify(page(session, daraja.intents_query(params), PaymentIntent.id, daraja.intent_json,
                            params["limit"], params["after"]))


@bp.get("/mpesa/intents/<intent_id>")
def get_intent(intent_id: str):
    """One payment intent."""
    with _store().read() as session:
        return jsonify(daraja.intent_json(daraja.visible_intent(session, intent_id)))
