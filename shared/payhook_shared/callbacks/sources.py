"""Gateway and generic sources: one normaliser per provider, and what their event types mean.

``normalise(provider, payload, raw, message_id)`` is what the ``/in/…`` route
calls once the signature has been verified. ``INTERPRETED`` lists the types
Payhook understands; any other gateway type is delivered as-is.
"""

from __future__ import annotations

from typing import Any

from ..events import NormalisedEvent
from . import flutterwave, generic, paystack, stripe
from .gateways import FLUTTERWAVE, GATEWAYS, PAYSTACK, STRIPE

INTERPRETED = stripe.INTERPRETED | paystack.INTERPRETED | flutterwave.INTERPRETED
# Money coming in (or failing to): these send the merchant's payment notice and the buyer's receipt.
PAYMENT_TYPES = frozenset({stripe.PAYMENT_SUCCEEDED, stripe.PAYMENT_FAILED, paystack.CHARGE_SUCCESS,
                           flutterwave.CHARGE_COMPLETED})
# Money going back out: a dispute is urgent, a refund high.
DISPUTE_TYPES = frozenset({stripe.DISPUTE_CREATED})
REFUND_TYPES = frozenset({stripe.CHARGE_REFUNDED, paystack.REFUND_PROCESSED})


def normalise(provider: str, payload: dict[str, Any], raw: bytes, message_id: str | None = None) -> NormalisedEvent:
    """The ``NormalisedEvent`` of a verified body from a ``provider`` source.

    Raises:
      DecodeError: naming the field that is missing or unusable.
    """
    if provider == STRIPE:
        return stripe.normalise(payload)
    if provider == PAYSTACK:
        return paystack.normalise(payload, raw)
    if provider == FLUTTERWAVE:
        return flutterwave.normalise(payload, raw)
    return generic.normalise(payload, raw, provider, message_id)


def passthrough(event: NormalisedEvent) -> bool:
    """Whether ``event`` is a gateway type Payhook delivers as-is without interpreting it."""
    return event.provider in GATEWAYS and event.type not in INTERPRETED


def sends_payment_notices(event: NormalisedEvent) -> bool:
    """Whether ``event`` may cause payment notices and receipts (only money received, for gateways)."""
    return event.provider not in GATEWAYS or event.type in PAYMENT_TYPES
