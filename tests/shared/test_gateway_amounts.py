"""Gateway amounts become exact Payhook minor units, whatever unit the provider writes."""

from __future__ import annotations

import pytest

from payhook_shared.callbacks import flutterwave, paystack, stripe
from payhook_shared.errors import DecodeError


@pytest.mark.parametrize("convert, amount, currency, minor", [
    (stripe.to_minor, 2000, "USD", 2000),        # cents
    (stripe.to_minor, 5000, "JPY", 5000),        # zero-decimal: Stripe's unit is the yen
    (stripe.to_minor, 150000, "KES", 150000),
    (stripe.to_minor, 10000, "NGN", 10000),
    (stripe.to_minor, 1500, "KWD", 1500),        # three-decimal: thousandths
    (stripe.to_minor, 5000, "MGA", 500000),      # Stripe zero-decimal, ISO two-decimal
    (stripe.to_minor, 120000, "ISK", 1200),      # Stripe writes ISK with two decimals, ISO has none
    (paystack.to_minor, 10000, "NGN", 10000),    # kobo
    (paystack.to_minor, 250050, "KES", 250050),
    (paystack.to_minor, 500000, "XOF", 5000),    # Paystack subunits of a currency with none
    (paystack.to_minor, 999, "USD", 999),
    (flutterwave.to_minor, 100, "NGN", 10000),   # major units
    (flutterwave.to_minor, 2500.5, "KES", 250050),
    (flutterwave.to_minor, "19.99", "USD", 1999),
    (flutterwave.to_minor, 5000, "JPY", 5000),
])
def test_amount_table(convert, amount, currency, minor):
    assert convert(amount, currency) == minor


@pytest.mark.parametrize("convert, amount, currency", [
    (stripe.to_minor, 12.5, "USD"), (stripe.to_minor, "2000", "USD"), (stripe.to_minor, -1, "USD"),
    (stripe.to_minor, 120050, "ISK"), (paystack.to_minor, True, "NGN"), (flutterwave.to_minor, 1.5, "JPY"),
    (flutterwave.to_minor, "ten", "KES"), (flutterwave.to_minor, 1.001, "KES"),
])
def test_unusable_amounts_are_refused_naming_the_field(convert, amount, currency):
    with pytest.raises(DecodeError, match="amount"):
        convert(amount, currency)
