"""Generic payment events: ``POST /v1/events``.

Any system that can call an HTTP API can feed Payhook: the event is
recorded, delivered and emailed exactly like a provider callback. The
caller's ``idempotency_key`` is the dedupe key, so a retried request answers
``200`` with the first event's id and records nothing new.
"""

from __future__ import annotations


from flask import Blueprint, current_app, jsonify

from payhook_shared.logs import bind

from .. import auth, merchants
from ..priority_rules import classify, rules_of
from ..errors import Forbidden, InvalidPayload, NotFound
from ..schemas import EventCreateSchema, json_body, load
from ..services.events import normalise_api_event

bp = Blueprint("events", __name__, url_prefix="/v1")
bp.before_request(auth.require_api_key)


def _refuse(field: str, message: str) -> InvalidPayload:
    return InvalidPayload(f"{field}: {message}", {field: [message]})


def _merchant_id(requested: str | None) -> str:
    principal = auth.current_principal()
    if principal.is_admin:
        if requested is None:
            raise _refuse("merchant_id", "is required with an admin API key")
        return requested
    if requested is not None and requested != principal.merchant_id:
        raise NotFound(f"no merchant {requested}")
    return principal.merchant_id


@bp.post("/events")
def create_event():
    """Record a payment event for a merchant: 201 the first time, 200 with the same id on a repeat."""
    raw, payload = json_body()
    body = load(EventCreateSchema(), payload)
    merchant_id = _merchant_id(body["merchant_id"])
    store = current_app.extensions["payhook.store"]
    merchant = merchants.load(store, merchant_id)
    if merchant is None:
        raise NotFound(f"no merchant {merchant_id}")
    if not merchant.enabled:
        raise Forbidden("merchant disabled")
    event = normalise_api_event(body)
    priority = body["priority"] if body["priority"] is not None else classify(event, rules=rules_of(merchant))
    with bind(merchant_id=merchant.id):
        recorded = current_app.extensions["payhook.recorder"].record(merchant, event, raw, priority)
    return jsonify(id=recorded.event_id), 200 if recorded.duplicate else 201
