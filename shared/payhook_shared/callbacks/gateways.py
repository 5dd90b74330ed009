"""What the card and mobile-money gateway normalisers share: providers, amounts, payload access.

Each provider states amounts in its own unit: Stripe and Paystack in their
"smallest unit" (which for Stripe's zero-decimal currencies is the major unit,
and for its three-decimal currencies thousandths), Flutterwave in major units.
Every amount becomes Payhook's minor units (``money.exponent``) exactly, or
the callback is refused naming the field.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from .. import money
from ..errors import DecodeError

STRIPE = "stripe"
PAYSTACK = "paystack"
FLUTTERWAVE = "flutterwave"
STANDARD_WEBHOOKS = "standard-webhooks"
HMAC = "hmac"
PROVIDERS = (STRIPE, PAYSTACK, FLUTTERWAVE, STANDARD_WEBHOOKS, HMAC)
# Providers whose payloads Payhook interprets; the generic ones follow the /v1/events convention.
GATEWAYS = frozenset({STRIPE, PAYSTACK, FLUTTERWAVE})

_CURRENCY = re.compile(r"^[A-Za-z]{3}$")
_TYPE = re.compile(r"^[A-Za-z0-9_.:-]{1,80}$")


def refuse(field: str, message: str) -> DecodeError:
    """A ``DecodeError`` naming ``field``, as the schemas' errors do."""
    return DecodeError(f"{field}: {message}", {field: [message]})


def obj(value: Any, field: str) -> dict[str, Any]:
    """``value``, which must be a JSON object."""
    if not isinstance(value, dict):
        raise refuse(field, "must be a JSON object.")
    return value


def text(value: Any, field: str, required: bool = False, limit: int = 200) -> str | None:
    """A short string (numbers accepted, as ids often are); ``None`` when absent and not required."""
    if value is None or value == "":
        if required:
            raise refuse(field, "Missing data for required field.")
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise refuse(field, "must be a string.")
    out = str(value).strip()
    if len(out) > limit:
        raise refuse(field, f"must be at most {limit} characters.")
    return out


def event_type(value: Any, field: str) -> str:
    """A provider event type such as ``payment_intent.succeeded``."""
    if not isinstance(value, str) or not _TYPE.match(value):
        raise refuse(field, "must be an event type of letters, digits and _ . : - (at most 80).")
    return value


def currency(value: Any, field: str) -> str:
    """A three-letter ISO 4217 code, upper-cased (Stripe sends ``usd``)."""
    if not isinstance(value, str) or not _CURRENCY.match(value):
        raise refuse(field, "must be a three-letter ISO 4217 code such as KES.")
    return value.upper()


def minor_units(amount: Any, code: str, provider_exponent: int, field: str) -> int:
    """``amount`` in the provider's unit (10**-``provider_exponent`` of the major unit) as Payhook minor units.

    Raises:
      DecodeError: naming ``field`` for anything outside ``money``'s grammar, a negative, an amount out of
        range or one finer than ``code`` allows.
    """
    try:
        return money.to_minor(amount, code, provider_exponent)
    except money.AmountError as exc:
        raise refuse(field, str(exc)) from None


def integer_amount(amount: Any, field: str) -> Any:
    """An amount that must be a whole number (Stripe and Paystack never send fractions of their unit)."""
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise refuse(field, "must be a whole number of the currency's smallest unit.")
    return amount


def body_digest(raw: bytes) -> str:
    """A dedupe id for a payload that carries none of its own: the SHA-256 of its bytes."""
    return hashlib.sha256(raw).hexdigest()
