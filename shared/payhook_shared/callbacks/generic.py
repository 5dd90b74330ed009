"""Events from the merchant's own signed senders (``standard-webhooks`` and ``hmac`` sources).

They follow the ``POST /v1/events`` convention: ``{"type", "id"?, "data":
{"status"?, "amount"? (major units), "currency"?}, "customer_email"?}``. The
type is kept as given; ``status`` is kept when it is ``succeeded``, ``failed``
or ``unknown``, else ``unknown``. The dedupe key is the sender's message id
(Standard Webhooks' ``webhook-id``), else the body's ``id``, else the body's SHA-256.
"""

from __future__ import annotations

from typing import Any

from .. import addresses
from ..events import STATUSES, UNKNOWN, NormalisedEvent
from .gateways import body_digest, currency, event_type, minor_units, obj, text


def normalise(payload: dict[str, Any], raw: bytes, provider: str, message_id: str | None = None) -> NormalisedEvent:
    """The ``NormalisedEvent`` of one generic signed event.

    Raises:
      DecodeError: naming the field that is missing or unusable.
    """
    kind = event_type(payload.get("type"), "type")
    data = obj(payload.get("data", {}), "data")
    own_id = message_id or text(payload.get("id"), "id", limit=200) or body_digest(raw)
    status = data.get("status")
    event = NormalisedEvent(provider=provider, type=kind,
                            status=status if isinstance(status, str) and status in STATUSES else UNKNOWN,
                            dedupe_key=f"{provider}:{own_id}", provider_ids={"id": own_id})
    if data.get("currency") is not None:
        event.currency = currency(data.get("currency"), "data.currency")
    if data.get("amount") is not None:
        if event.currency is None:
            event.currency = currency(None, "data.currency")
        event.amount_minor = minor_units(data.get("amount"), event.currency, 0, "data.amount")
    event.customer_email = addresses.valid_or_none(payload.get("customer_email"))
    return event
