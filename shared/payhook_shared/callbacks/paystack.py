"""Paystack events (https://paystack.com/docs/payments/webhooks/): normalisation to ``NormalisedEvent``.

Interpreted types (event type ``paystack.<Paystack event>``):

| Paystack event | status |
|---|---|
| ``charge.success`` | succeeded |
| ``transfer.success`` | succeeded (a payout) |
| ``transfer.failed`` | failed (a payout) |
| ``refund.processed`` | succeeded (a refund) |

Any other event is kept and delivered as-is as ``paystack.<event>``, status
``unknown``. Amounts are in the currency's subunit (kobo, pesewas, cents),
always hundredths. Paystack events carry no event id of their own: the dedupe
key is the event name and the object's ``data.id`` (``paystack:charge.success:302961``),
or the body's SHA-256 when there is no id.
"""

from __future__ import annotations

from typing import Any

from .. import addresses
from ..events import FAILED, SUCCEEDED, UNKNOWN, NormalisedEvent
from .gateways import PAYSTACK, body_digest, currency, event_type, integer_amount, minor_units, obj, text

CHARGE_SUCCESS = "paystack.charge.success"
TRANSFER_SUCCESS = "paystack.transfer.success"
TRANSFER_FAILED = "paystack.transfer.failed"
REFUND_PROCESSED = "paystack.refund.processed"
INTERPRETED = frozenset({CHARGE_SUCCESS, TRANSFER_SUCCESS, TRANSFER_FAILED, REFUND_PROCESSED})
_STATUS = {CHARGE_SUCCESS: SUCCEEDED, TRANSFER_SUCCESS: SUCCEEDED, TRANSFER_FAILED: FAILED,
           REFUND_PROCESSED: SUCCEEDED}
SUBUNIT_EXPONENT = 2


def to_minor(amount: Any, code: str, field: str = "data.amount") -> int:
    """A Paystack subunit amount in ``code`` as Payhook minor units."""
    return minor_units(integer_amount(amount, field), code, SUBUNIT_EXPONENT, field)


def _email(data: dict[str, Any]) -> str | None:
    customer = data.get("customer")
    email = customer.get("email") if isinstance(customer, dict) else None
    return addresses.valid_or_none(email)


def normalise(payload: dict[str, Any], raw: bytes) -> NormalisedEvent:
    """The ``NormalisedEvent`` of one Paystack event body (``raw`` is its bytes, for the fallback dedupe key).

    Raises:
      DecodeError: naming the field that is missing or unusable.
    """
    name = event_type(payload.get("event"), "event")
    data = obj(payload.get("data"), "data")
    full_type = f"{PAYSTACK}.{name}"
    object_id = text(data.get("id"), "data.id", limit=100)
    dedupe = f"{PAYSTACK}:{name}:{object_id}" if object_id else f"{PAYSTACK}:{name}:{body_digest(raw)}"
    event = NormalisedEvent(provider=PAYSTACK, type=full_type, status=UNKNOWN, dedupe_key=dedupe,
                            provider_ids={"id": object_id} if object_id else {})
    if full_type not in INTERPRETED:
        return event
    event.status = _STATUS[full_type]
    event.currency = currency(data.get("currency"), "data.currency")
    event.amount_minor = to_minor(data.get("amount"), event.currency)
    event.reference = text(data.get("reference") or data.get("transaction_reference"), "data.reference", limit=200)
    event.customer_email = _email(data)
    if full_type == CHARGE_SUCCESS:
        event.receipt = event.reference
        event.result_desc = text(data.get("gateway_response"), "data.gateway_response", limit=200)
    elif full_type in (TRANSFER_SUCCESS, TRANSFER_FAILED):
        event.provider_ids["transfer_code"] = text(data.get("transfer_code"), "data.transfer_code", limit=100)
        event.result_desc = text(data.get("reason"), "data.reason", limit=200)
    metadata = data.get("metadata")
    if isinstance(metadata, dict) and metadata:
        event.details["metadata"] = metadata
    return event
