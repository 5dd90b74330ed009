"""The provider's own key for an event: what a merchant's support desk is asked about.

Safaricom names an STK push by its ``CheckoutRequestID``, a C2B payment by its
``TransID``, a Result API call by its ``ConversationID``; a gateway names its
events by their event id (or the object's id). ``GET /v1/events?reference=``
looks the key up in ``events.provider_key``, which ingest fills from here.
"""

from __future__ import annotations

from typing import Any

#: Where the key is among a normalised event's ``provider_ids``, first found wins (migration 0012r agrees).
KEY_ORDER = ("CheckoutRequestID", "TransID", "ConversationID", "event_id", "id")
MAX_LENGTH = 200


def provider_key(provider_ids: dict[str, Any]) -> str | None:
    """The provider's own key among ``provider_ids``, or ``None`` when it names none."""
    for name in KEY_ORDER:
        value = provider_ids.get(name)
        if value not in (None, ""):
            return str(value)[:MAX_LENGTH]
    return None
