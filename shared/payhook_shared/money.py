"""Exact amounts: integers of minor units, with each currency's exponent."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

# ISO 4217 minor-unit exponents that differ from 2; every other currency has 2.
_EXPONENTS = {
    "BIF": 0, "CLP": 0, "DJF": 0, "GNF": 0, "ISK": 0, "JPY": 0, "KMF": 0, "KRW": 0, "PYG": 0,
    "RWF": 0, "UGX": 0, "UYI": 0, "VND": 0, "VUV": 0, "XAF": 0, "XOF": 0, "XPF": 0,
    "BHD": 3, "IQD": 3, "JOD": 3, "KWD": 3, "LYD": 3, "OMR": 3, "TND": 3,
}

MAX_MINOR = 10**15  # far above any real payment; keeps values inside a BIGINT


class AmountError(ValueError):
    """An amount that is not a finite, non-negative number of minor units."""


def exponent(currency: str) -> int:
    """Digits after the decimal point in ``currency``'s minor unit."""
    return _EXPONENTS.get(currency.upper(), 2)


def to_minor(value: object, currency: str) -> int:
    """Convert a major-unit amount (``"5.00"``, ``5``, ``1.0``) to minor units exactly.

    Raises:
      AmountError: for non-numbers, negatives, NaN/infinity, sub-minor precision or absurd sizes.
    """
    if isinstance(value, bool) or value is None:
        raise AmountError(f"not an amount: {value!r}")
    try:
        amount = Decimal(str(value).strip().replace(",", ""))
    except InvalidOperation:
        raise AmountError(f"not an amount: {value!r}") from None
    if not amount.is_finite() or amount < 0:
        raise AmountError(f"not a valid amount: {value!r}")
    minor = amount.scaleb(exponent(currency))
    if minor != minor.to_integral_value():
        raise AmountError(f"more precision than {currency} allows: {value!r}")
    if minor > MAX_MINOR:
        raise AmountError(f"amount too large: {value!r}")
    return int(minor)


def format_amount(minor: int, currency: str) -> Decimal:
    """Minor units back to an exact major-unit ``Decimal`` (``100, "KES"`` → ``1.00``)."""
    exp = exponent(currency)
    return Decimal(minor).scaleb(-exp).quantize(Decimal(1).scaleb(-exp))
