"""Stripe events (https://docs.stripe.com/api/events): normalisation to ``NormalisedEvent``.

Interpreted types (event type ``stripe.<Stripe type>``):

| Stripe type | status | amount |
|---|---|---|
| ``payment_intent.succeeded`` | succeeded | ``amount_received`` (else ``amount``) |
| ``payment_intent.payment_failed`` | failed (``last_payment_error`` as code/description) | ``amount`` |
| ``charge.refunded`` | succeeded (the refund went through) | ``amount_refunded`` |
| ``charge.dispute.created`` | unknown (the dispute's outcome is open) | the disputed ``amount`` |

Any other type is kept and delivered as-is as ``stripe.<type>``, status
``unknown``. Stripe's event id (``evt_…``) is the dedupe key.

Amounts: Stripe states them in the currency's smallest unit as Stripe defines
it: the major unit for its zero-decimal currencies (JPY, KRW, UGX, …),
thousandths for its three-decimal ones, and hundredths otherwise (ISK
included, which Stripe writes with two decimals though ISO gives it none).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from .. import addresses
from ..events import FAILED, SUCCEEDED, UNKNOWN, NormalisedEvent
from .gateways import STRIPE, currency, event_type, integer_amount, minor_units, obj, refuse, text

PAYMENT_SUCCEEDED = "stripe.payment_intent.succeeded"
PAYMENT_FAILED = "stripe.payment_intent.payment_failed"
CHARGE_REFUNDED = "stripe.charge.refunded"
DISPUTE_CREATED = "stripe.charge.dispute.created"
INTERPRETED = frozenset({PAYMENT_SUCCEEDED, PAYMENT_FAILED, CHARGE_REFUNDED, DISPUTE_CREATED})

# https://docs.stripe.com/currencies#zero-decimal and #three-decimal
ZERO_DECIMAL = frozenset({"BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA", "PYG", "RWF", "UGX", "VND",
                          "VUV", "XAF", "XOF", "XPF"})
THREE_DECIMAL = frozenset({"BHD", "JOD", "KWD", "OMR", "TND"})


def stripe_exponent(code: str) -> int:
    """Decimal places of Stripe's ``amount`` unit for ``code``."""
    if code in ZERO_DECIMAL:
        return 0
    return 3 if code in THREE_DECIMAL else 2


def to_minor(amount: Any, code: str, field: str = "data.object.amount") -> int:
    """A Stripe ``amount`` in ``code`` as Payhook minor units."""
    return minor_units(integer_amount(amount, field), code, stripe_exponent(code), field)


def _money(thing: dict[str, Any], key: str) -> tuple[int, str]:
    code = currency(thing.get("currency"), "data.object.currency")
    return to_minor(thing.get(key), code, f"data.object.{key}"), code


def _created(value: Any) -> dt.datetime | None:
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 10**11:
        return dt.datetime.fromtimestamp(value, dt.timezone.utc)
    return None


def _email(thing: dict[str, Any]) -> str | None:
    billing = thing.get("billing_details")
    candidates = [thing.get("receipt_email"), billing.get("email") if isinstance(billing, dict) else None]
    return next((c for c in candidates if addresses.is_valid(c)), None)


def normalise(payload: dict[str, Any]) -> NormalisedEvent:
    """The ``NormalisedEvent`` of one Stripe event body.

    Raises:
      DecodeError: naming the field that is missing or unusable.
    """
    event_id = text(payload.get("id"), "id", required=True, limit=100)
    kind = event_type(payload.get("type"), "type")
    thing = obj(obj(payload.get("data"), "data").get("object"), "data.object")
    full_type = f"{STRIPE}.{kind}"
    event = NormalisedEvent(provider=STRIPE, type=full_type, status=UNKNOWN, dedupe_key=f"{STRIPE}:{event_id}",
                            occurred_at=_created(payload.get("created")),
                            provider_ids={"event_id": event_id, "livemode": payload.get("livemode") is True})
    if full_type not in INTERPRETED:
        return event
    object_id = text(thing.get("id"), "data.object.id", required=True, limit=100)
    event.provider_ids["object_id"] = object_id
    event.customer_email = _email(thing)
    metadata = thing.get("metadata")
    if isinstance(metadata, dict) and metadata:
        event.details["metadata"] = metadata
    if full_type == PAYMENT_SUCCEEDED:
        received = "amount_received" if thing.get("amount_received") is not None else "amount"
        event.amount_minor, event.currency = _money(thing, received)
        event.status = SUCCEEDED
        event.receipt = text(thing.get("latest_charge"), "data.object.latest_charge", limit=100)
    elif full_type == PAYMENT_FAILED:
        event.amount_minor, event.currency = _money(thing, "amount")
        event.status = FAILED
        error = thing.get("last_payment_error")
        if isinstance(error, dict):
            event.result_code = text(error.get("decline_code") or error.get("code"), "data.object.last_payment_error.code",
                                     limit=40)
            message = error.get("message")
            event.result_desc = message[:1000] if isinstance(message, str) else None
    elif full_type == CHARGE_REFUNDED:
        event.amount_minor, event.currency = _money(thing, "amount_refunded")
        event.status = SUCCEEDED
        event.receipt = object_id
        event.reference = text(thing.get("payment_intent"), "data.object.payment_intent", limit=100)
    else:
        event.amount_minor, event.currency = _money(thing, "amount")
        event.reference = text(thing.get("charge"), "data.object.charge", limit=100)
        event.result_desc = text(thing.get("reason"), "data.object.reason", limit=100)
        if event.reference is None:
            raise refuse("data.object.charge", "Missing data for required field.")
    return event
