"""Default priority rules for events, first match wins.

1. URGENT: a reversal, whatever its status: money left the merchant's account.
2. LOW: informational callbacks: account balances (including their timeouts)
   and C2B validation requests, which only announce a payment that the
   confirmation then reports.
3. URGENT: a failed payment, or one whose outcome is unknown (a QueueTimeOut:
   the request may or may not have gone through), so a merchant knows now.
4. HIGH: a payment of 100,000.00 or more (two-decimal currency).
5. NORMAL: everything else.
"""

from __future__ import annotations

from payhook_shared.callbacks import mpesa
from payhook_shared.events import FAILED, UNKNOWN, NormalisedEvent
from payhook_shared.priority import Priority

LARGE_PAYMENT_MINOR = 100_000_00  # 100,000.00 in a two-decimal currency
URGENT_TYPES = frozenset({mpesa.REVERSAL})
LOW_TYPES = frozenset({mpesa.ACCOUNT_BALANCE, mpesa.C2B_VALIDATION})


def classify(event: NormalisedEvent) -> Priority:
    """The priority an event gets under the default rules."""
    if event.type in URGENT_TYPES:
        return Priority.URGENT
    if event.type in LOW_TYPES:
        return Priority.LOW
    if event.status in (FAILED, UNKNOWN):
        return Priority.URGENT
    if event.amount_minor is not None and event.amount_minor >= LARGE_PAYMENT_MINOR:
        return Priority.HIGH
    return Priority.NORMAL
