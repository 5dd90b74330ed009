"""Default priority rules for events.

URGENT: a payment failed, was reversed, or its outcome is unknown (a merchant
must act or at least know now). HIGH: a large payment. NORMAL: an ordinary
payment. LOW: informational callbacks such as balances.
"""

from __future__ import annotations

from payhook_shared.events import FAILED, UNKNOWN, NormalisedEvent
from payhook_shared.priority import Priority

LARGE_PAYMENT_MINOR = 100_000_00  # 100,000.00 in a two-decimal currency
LOW_TYPES = frozenset({"mpesa.account_balance"})


def classify(event: NormalisedEvent) -> Priority:
    """The priority an event gets under the default rules."""
    if event.type in LOW_TYPES:
        return Priority.LOW
    if event.status in (FAILED, UNKNOWN):
        return Priority.URGENT
    if event.amount_minor is not None and event.amount_minor >= LARGE_PAYMENT_MINOR:
        return Priority.HIGH
    return Priority.NORMAL
