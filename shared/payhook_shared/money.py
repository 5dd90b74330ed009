"""Exact amounts: integers of minor units, with each currency's exponent.

Every amount Payhook reads (M-Pesa callbacks, gateway sources, ``/v1/events``)
follows one grammar, implemented here: a JSON number, or a string of ASCII
digits with an optional fraction (``"10"``, ``"5.00"``), never negative, at
most ``MAX_MINOR`` minor units, and no finer than the currency's minor unit
(trailing zeros past it are fine: ``"5.000"`` KES is 500). Thousands
separators (``"1,000"``), underscores, signs, whitespace, exponents
(``"1e5"``) and non-ASCII digits are not amounts. No ``Decimal`` context is
involved, so no spelling can overflow it.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal

# ISO 4217 minor-unit exponents that differ from 2; every other currency has 2.
_EXPONENTS = {
    "BIF": 0, "CLP": 0, "DJF": 0, "GNF": 0, "ISK": 0, "JPY": 0, "KMF": 0, "KRW": 0, "PYG": 0,
    "RWF": 0, "UGX": 0, "UYI": 0, "VND": 0, "VUV": 0, "XAF": 0, "XOF": 0, "XPF": 0,
    "BHD": 3, "IQD": 3, "JOD": 3, "KWD": 3, "LYD": 3, "OMR": 3, "TND": 3,
}

MAX_MINOR = 10**15  # far above any real payment; keeps values inside a BIGINT
# Longer than any amount in range can be written (16 digits, a point, a few decimals and zeros).
MAX_TEXT = 40
_GRAMMAR = re.compile(r"([0-9]+)(?:\.([0-9]+))?", re.ASCII)
# Past this, out of range in any unit Payhook reads (at most thousandths of a currency with no minor unit).
_PAST_RANGE = MAX_MINOR * 10**3


class AmountError(ValueError):
    """A value that is not an amount by Payhook's grammar, or is out of range for its currency."""


def exponent(currency: str) -> int:
    """Digits after the decimal point in ``currency``'s minor unit."""
    return _EXPONENTS.get(currency.upper(), 2)


def _shown(value: object) -> str:
    """``value`` for an error message, short whatever its size (a huge int is not even turned to text)."""
    if isinstance(value, int) and not -(10**40) < value < 10**40:
        return "a number of more than 40 digits"
    text = repr(value)
    return text if len(text) <= MAX_TEXT else f"{text[:MAX_TEXT]}..."


def _digits(value: object) -> tuple[int, int]:
    """``value`` as ``(n, scale)``, meaning n × 10**-scale exactly.

    Raises:
      AmountError: for anything outside the grammar, or a number obviously out of range.
    """
    if isinstance(value, bool) or value is None:
        raise AmountError(f"not an amount: {_shown(value)}")
    if isinstance(value, int):
        if value < 0:
            raise AmountError(f"must not be negative: {_shown(value)}")
        if value > _PAST_RANGE:
            raise AmountError(f"amount out of range: {_shown(value)}")
        return value, 0
    if isinstance(value, float):
        if not math.isfinite(value) or value < 0:
            raise AmountError(f"not a finite, non-negative amount: {_shown(value)}")
        if value > _PAST_RANGE:
            raise AmountError(f"amount out of range: {_shown(value)}")
        # The float's shortest exact spelling, which is what the JSON said (19.99, not 19.989999…).
        _, digits, exp = Decimal(repr(value)).as_tuple()
        n = int("".join(map(str, digits)))
        return (n * 10**exp, 0) if exp >= 0 else (n, -exp)
    if isinstance(value, str):
        match = _GRAMMAR.fullmatch(value) if len(value) <= MAX_TEXT else None
        if match is None:
            raise AmountError(f"not an amount (ASCII digits with an optional fraction, such as 10.00): "
                              f"{_shown(value)}")
        whole, fraction = match.group(1), match.group(2) or ""
        return int(whole + fraction), len(fraction)
    raise AmountError(f"not an amount: a {type(value).__name__}")


def to_minor(value: object, currency: str, unit_exponent: int = 0) -> int:
    """Read an amount written in units of 10**-``unit_exponent`` of ``currency`` (default: major units).

    ``("5.00", "KES")`` → 500; ``(5000, "MGA", 0)`` → 500000; Stripe's ISK ``(120000, "ISK", 2)`` → 1200.

    Raises:
      AmountError: for anything outside the grammar, negatives, sub-minor precision or amounts out of range.
    """
    n, scale = _digits(value)
    shift = exponent(currency) - unit_exponent - scale
    if shift >= 0:
        minor = n * 10**shift
    else:
        minor, rest = divmod(n, 10**-shift)
        if rest:
            raise AmountError(f"more precision than {currency.upper()} allows: {_shown(value)}")
    if minor > MAX_MINOR:
        raise AmountError(f"amount out of range: {_shown(value)}")
    return minor


def format_amount(minor: int, currency: str) -> Decimal:
    """Minor units back to an exact major-unit ``Decimal`` (``100, "KES"`` → ``1.00``)."""
    exp = exponent(currency)
    return Decimal(minor).scaleb(-exp).quantize(Decimal(1).scaleb(-exp))
