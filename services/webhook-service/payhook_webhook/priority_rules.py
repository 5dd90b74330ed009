"""Priority rules for events: a merchant's own overrides first, then the defaults.

Defaults, first match wins:

1. URGENT: a reversal or a card dispute, whatever its status: money left (or
   may leave) the merchant's account.
2. LOW: informational callbacks: account balances (including their timeouts)
   and C2B validation requests, which only announce a payment that the
   confirmation then reports.
3. URGENT: a failed payment, or one whose outcome is unknown (a QueueTimeOut:
   the request may or may not have gone through), so a merchant knows now.
4. HIGH: a refund (``stripe.charge.refunded``, ``paystack.refund.processed``).
5. NORMAL: a gateway event Payhook delivers as-is without interpreting it
   (``stripe.customer.created``): its status is always unknown, not alarming.
6. HIGH: a payment of 100,000.00 or more (two-decimal currency).
7. NORMAL: everything else.

Overrides live in ``Merchant.settings["priority_rules"]`` (validated by
``payhook_shared.merchant_settings``): a list of rules,
tried in order before the defaults; the first rule whose every given condition
holds decides the priority::

    [{"event_type": "mpesa.stk_push", "status": "failed", "priority": "normal"},
     {"min_amount_minor": 1000000, "priority": "urgent"},
     {"event_type": "shop.refund", "priority": "low"}]

Conditions: ``event_type`` (equal), ``status`` (``succeeded``/``failed``/
``unknown``), ``min_amount_minor`` (amount in minor units at least this; an
event without an amount never matches). A rule with no condition matches
every event. ``priority`` is ``urgent``, ``high``, ``normal`` or ``low``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from payhook_shared import merchant_settings
from payhook_shared.callbacks import mpesa, sources
from payhook_shared.events import FAILED, UNKNOWN, NormalisedEvent
from payhook_shared.priority import Priority

log = logging.getLogger(__name__)

LARGE_PAYMENT_MINOR = 100_000_00  # 100,000.00 in a two-decimal currency
URGENT_TYPES = frozenset({mpesa.REVERSAL, mpesa.REVERSAL_RESOLVED}) | sources.DISPUTE_TYPES
HIGH_TYPES = sources.REFUND_TYPES
LOW_TYPES = frozenset({mpesa.ACCOUNT_BALANCE, mpesa.C2B_VALIDATION})

Rule = Mapping[str, Any]


def rules_of(merchant: Any) -> list[Rule]:
    """The priority overrides a merchant (or its ingest profile) configured that the settings schema accepts."""
    return merchant_settings.priority_rules(merchant.settings)


def _matches(rule: Rule, event: NormalisedEvent) -> bool:
    if "event_type" in rule and rule["event_type"] != event.type:
        return False
    if "status" in rule and rule["status"] != event.status:
        return False
    if "min_amount_minor" in rule:
        threshold = rule["min_amount_minor"]
        if event.amount_minor is None or event.amount_minor < threshold:
            return False
    return True


def _override(event: NormalisedEvent, rules: Sequence[Rule]) -> Priority | None:
    for rule in rules:
        try:
            if _matches(rule, event):
                return Priority.parse(rule["priority"])
        except (KeyError, TypeError, ValueError):
            # Stored rules are validated; rules given to classify() directly must not cost the event either.
            log.warning("ignoring malformed priority rule %r", rule)
    return None


def classify(event: NormalisedEvent, rules: Sequence[Rule] | None = None) -> Priority:
    """The priority ``event`` gets: the first matching rule of ``rules``, else the defaults."""
    if rules:
        chosen = _override(event, rules)
        if chosen is not None:
            return chosen
    if event.type in URGENT_TYPES:
        return Priority.URGENT
    if event.type in LOW_TYPES:
        return Priority.LOW
    if event.type in HIGH_TYPES:
        return Priority.HIGH
    if sources.passthrough(event):
        return Priority.NORMAL
    if event.status in (FAILED, UNKNOWN):
        return Priority.URGENT
    if event.amount_minor is not None and event.amount_minor >= LARGE_PAYMENT_MINOR:
        return Priority.HIGH
    return Priority.NORMAL
