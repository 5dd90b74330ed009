"""Flutterwave webhooks (https://developer.flutterwave.com/docs/webhooks): normalisation to ``NormalisedEvent``.

``charge.completed`` (the only interpreted type) becomes
``flutterwave.charge.completed`` with status from ``data.status``:
``successful``/``succeeded`` → succeeded, ``failed`` → failed, anything else
(``pending``) → unknown. Flutterwave states amounts in major units
(``"amount": 100`` is NGN 100.00). Other events are kept as-is as
``flutterwave.<event>``. v3 bodies name the event in ``event``, newer ones in
``type`` with an event ``id``; the dedupe key is that event id when present,
else the event name and ``data.id`` (``flutterwave:charge.completed:285959875``).
"""

from __future__ import annotations

from typing import Any

from .. import addresses
from ..events import FAILED, SUCCEEDED, UNKNOWN, NormalisedEvent
from .gateways import FLUTTERWAVE, body_digest, currency, event_type, minor_units, obj, text

CHARGE_COMPLETED = "flutterwave.charge.completed"
INTERPRETED = frozenset({CHARGE_COMPLETED})
_STATUSES = {"successful": SUCCEEDED, "succeeded": SUCCEEDED, "success": SUCCEEDED, "failed": FAILED}


def to_minor(amount: Any, code: str, field: str = "data.amount") -> int:
    """A Flutterwave major-unit amount in ``code`` as Payhook minor units."""
    return minor_units(amount, code, 0, field)


def normalise(payload: dict[str, Any], raw: bytes) -> NormalisedEvent:
    """The ``NormalisedEvent`` of one Flutterwave webhook body.

    Raises:
      DecodeError: naming the field that is missing or unusable.
    """
    field = "event" if "event" in payload else "type"
    name = event_type(payload.get(field), field)
    data = obj(payload.get("data"), "data")
    full_type = f"{FLUTTERWAVE}.{name}"
    event_id = text(payload.get("id"), "id", limit=100)
    object_id = text(data.get("id"), "data.id", limit=100)
    if event_id:
        dedupe = f"{FLUTTERWAVE}:{event_id}"
    else:
        dedupe = f"{FLUTTERWAVE}:{name}:{object_id or body_digest(raw)}"
    event = NormalisedEvent(provider=FLUTTERWAVE, type=full_type, status=UNKNOWN, dedupe_key=dedupe,
                            provider_ids={k: v for k, v in (("event_id", event_id), ("id", object_id)) if v})
    if full_type not in INTERPRETED:
        return event
    status = data.get("status")
    event.status = _STATUSES.get(status.lower(), UNKNOWN) if isinstance(status, str) else UNKNOWN
    event.result_code = text(status, "data.status", limit=40)
    event.currency = currency(data.get("currency"), "data.currency")
    event.amount_minor = to_minor(data.get("amount"), event.currency)
    event.reference = text(data.get("tx_ref") or data.get("reference"), "data.tx_ref", limit=200)
    event.receipt = text(data.get("flw_ref"), "data.flw_ref", limit=100)
    event.result_desc = text(data.get("processor_response"), "data.processor_response", limit=200) \
        if isinstance(data.get("processor_response"), (str, int)) else None
    customer = data.get("customer")
    if isinstance(customer, dict):
        email = customer.get("email")
        event.customer_email = addresses.valid_or_none(email)
        phone = customer.get("phone_number")
        event.phone = phone[:100] if isinstance(phone, str) and phone else None
    return event
