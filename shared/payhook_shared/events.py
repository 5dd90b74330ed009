"""The normalised payment event every callback becomes, and its webhook body."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from decimal import Decimal
from typing import Any

from .money import format_amount

SUCCEEDED = "succeeded"
FAILED = "failed"
UNKNOWN = "unknown"
STATUSES = (SUCCEEDED, FAILED, UNKNOWN)

#: How Payhook learned of an event (``data.source``): it was sent to Payhook (a provider's callback or webhook,
#: a signed sender, ``POST /v1/events``), Payhook asked the provider (Daraja's STK Push Query or Transaction
#: Status), or Payhook raised it itself (operational webhooks, ``payhook.test``).
CALLBACK = "callback"
QUERY = "query"
PAYHOOK = "payhook"
SOURCES = (CALLBACK, QUERY, PAYHOOK)

#: Synthetic events operators record to test a running stack; delivered, never mailed.
TEST_TYPE = "payhook.test"
#: Dedupe keys of test events (operators' ``payhook.test`` and endpoint tests) start so; the body says ``"test": true``.
TEST_PREFIX = "test:"


def selects(event_types: list[str] | tuple[str, ...] | None, event_type: str) -> bool:
    """Whether an endpoint's ``event_types`` filter names ``event_type``, exactly or by a family (``stripe.*``).

    ``None`` or empty selects nothing here: callers decide what "no filter" means.
    """
    if not event_types:
        return False
    return any(chosen == event_type or (chosen.endswith(".*") and event_type.startswith(chosen[:-1]))
               for chosen in event_types)


def is_test(dedupe_key: str) -> bool:
    """Whether an event with this dedupe key is a test event rather than a real payment or notice."""
    return dedupe_key.startswith(TEST_PREFIX)


@dataclasses.dataclass
class NormalisedEvent:
    """What Payhook knows about one payment, whatever the provider sent."""

    provider: str
    type: str
    status: str
    dedupe_key: str
    amount_minor: int | None = None
    currency: str | None = None
    receipt: str | None = None
    reference: str | None = None
    provider_ids: dict[str, Any] = dataclasses.field(default_factory=dict)
    phone: str | None = None
    result_code: str | None = None
    result_desc: str | None = None
    occurred_at: dt.datetime | None = None
    customer_email: str | None = None
    details: dict[str, Any] = dataclasses.field(default_factory=dict)
    source: str = CALLBACK


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def webhook_body(event: Any) -> bytes:
    """The JSON body delivered to merchant endpoints for a stored event.

    Deterministic for a given event, so every attempt sends the same bytes.
    """
    amount: Decimal | None = None
    if event.amount_minor is not None and event.currency:
        amount = format_amount(event.amount_minor, event.currency)
    try:
        raw: Any = json.loads(event.raw_payload)
    except ValueError:
        raw = event.raw_payload
    document = {
        "id": event.id,
        "type": event.type,
        "created_at": _iso(event.received_at),
        "test": is_test(event.dedupe_key),
        "data": {
            "merchant_id": event.merchant_id,
            "provider": event.provider,
            "status": event.status,
            # Rows written by a process older than the column (during an upgrade) have none: they were callbacks.
            "source": event.source or CALLBACK,
            "amount": str(amount) if amount is not None else None,
            "amount_minor": event.amount_minor,
            "currency": event.currency,
            "receipt": event.receipt,
            "reference": event.reference,
            "provider_ids": event.provider_ids,
            "phone": event.phone,
            "result_code": event.result_code,
            "result_desc": event.result_desc,
            "occurred_at": _iso(event.occurred_at),
            "customer_email": event.customer_email,
            "details": event.details,
            "raw": raw,
        },
    }
    return json.dumps(document, separators=(",", ":"), sort_keys=True).encode()
