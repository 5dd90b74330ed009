"""Events given through the API, and test events sent to one endpoint.

A test event is the catalog's example of a type, built by the real normaliser, recorded with a ``test:``
dedupe key (so its body says ``"test": true``) and one delivery, to the endpoint under test only; the
delivery-worker attempts it and the caller waits for the outcome (``api/event_types.py`` says why).
"""

from __future__ import annotations

import re
import time
from typing import Any

from flask import current_app
from sqlalchemy import select

from payhook_shared import catalog, ids, jobs, money
from payhook_shared.events import STATUSES, UNKNOWN, NormalisedEvent
from payhook_shared.messages import DeliverWebhook
from payhook_shared.priority import Priority
from payhook_shared.store import Delivery, DeliveryAttempt, Event, JobState
from payhook_shared.store.models import utcnow

from ..errors import InvalidPayload
from ..schemas import EventCreateSchema, load

PROVIDER = "api"
_CURRENCY = re.compile(r"^[A-Za-z]{3}$")
# Tests go ahead of the merchant's traffic: someone is waiting for the answer.
PRIORITY = Priority.URGENT
_POLL_SECONDS = 0.05


def _refuse(field: str, message: str) -> InvalidPayload:
    return InvalidPayload(f"{field}: {message}", {field: [message]})


def normalise_api_event(body: dict[str, Any]) -> NormalisedEvent:
    """The ``NormalisedEvent`` a validated ``POST /v1/events`` body describes.

    ``data.status`` is kept when it is ``succeeded``, ``failed`` or
    ``unknown`` and is otherwise ``unknown``; ``data.amount`` (major units)
    needs ``data.currency`` and becomes exact minor units.

    Raises:
      InvalidPayload: naming ``data.amount`` or ``data.currency`` when they cannot be read.
    """
    data = body["data"]
    status = data.get("status")
    currency = data.get("currency")
    if currency is not None:
        if not isinstance(currency, str) or not _CURRENCY.match(currency):
            raise _refuse("data.currency", "must be a three-letter ISO 4217 code such as KES")
        currency = currency.upper()
    amount_minor = None
    if data.get("amount") is not None:
        if currency is None:
            raise _refuse("data.currency", "is required when data.amount is given")
        try:
            amount_minor = money.to_minor(data["amount"], currency)
        except money.AmountError as exc:
            raise _refuse("data.amount", str(exc)) from None
    return NormalisedEvent(
        provider=PROVIDER,
        type=body["type"],
        status=status if isinstance(status, str) and status in STATUSES else UNKNOWN,
        dedupe_key=f"{PROVIDER}:{body['idempotency_key']}",
        amount_minor=amount_minor,
        currency=currency,
        customer_email=body["customer_email"],
    )


def test_types() -> list[str]:
    """The types an endpoint can be sent a test of: each catalog entry's example type."""
    return [entry.example_type for entry in catalog.ENTRIES]


def api_event(payload: dict):
    """An ``api`` example through the real ``POST /v1/events`` validation and normaliser."""
    return normalise_api_event(load(EventCreateSchema(), payload))


def send_test(endpoint_id: str, merchant_id: str, event_type: str) -> dict:
    """Record a test event of ``event_type`` for one endpoint, have it delivered, and return the outcome.

    The API and the console both test endpoints through here; the caller has
    checked that the endpoint is the principal's to test.

    Raises:
      InvalidPayload: naming ``type`` when the catalog has no example of it.
    """
    store, broker = current_app.extensions["payhook.store"], current_app.extensions["payhook.broker"]
    try:
        entry = catalog.by_example_type(event_type)
    except catalog.UnknownType as exc:
        raise InvalidPayload(f"type: {exc}", {"type": [str(exc)]}) from None
    event = catalog.example_event(entry, api_normaliser=api_event)
    event.dedupe_key = catalog.new_test_key()
    now = utcnow()
    event_id, delivery_id = ids.new_id("evt"), ids.new_id("dlv")
    message = jobs.plan(DeliverWebhook(delivery_ids=(delivery_id,), priority=PRIORITY))
    with store.write() as session:
        session.add(Event(id=event_id, merchant_id=merchant_id, priority=int(PRIORITY), received_at=now,
                          raw_payload=catalog.raw_payload(entry).decode(), **vars(event)))
        session.flush()
        session.add(Delivery(**jobs.new_row(message, now, id=delivery_id, event_id=event_id,
                                            endpoint_id=endpoint_id, merchant_id=merchant_id,
                                            priority=int(PRIORITY), round_start=0)))
    try:
        broker.enqueue(message)
    except Exception:  # recorded: the sweeper sends it once Redis answers; the wait below may still see it
        current_app.logger.warning("could not enqueue the test delivery %s; the sweeper will", delivery_id)
    answer = _outcome(store, delivery_id, current_app.extensions["payhook.settings"].endpoint_test_wait)
    answer.update(event_id=event_id, delivery_id=delivery_id, type=event.type, endpoint_id=endpoint_id)
    return answer


def _outcome(store, delivery_id: str, wait: float) -> dict:
    """The test delivery's outcome once the worker has settled it, or ``delivered: null`` after ``wait`` seconds."""
    deadline = time.monotonic() + wait
    while True:
        with store.read() as session:
            state, category, status, error = session.execute(select(
                Delivery.state, Delivery.last_category, Delivery.last_status, Delivery.last_error)
                .where(Delivery.id == delivery_id)).one()
            if state in (JobState.DONE.value, JobState.DEAD.value):
                attempt = session.execute(select(DeliveryAttempt).where(DeliveryAttempt.delivery_id == delivery_id)
                                          .order_by(DeliveryAttempt.id.desc()).limit(1)).scalar_one_or_none()
                return {
                    "delivered": state == JobState.DONE.value, "status": status, "category": category,
                    "duration_ms": attempt.duration_ms if attempt else None,
                    "error": error,
                    "response": attempt.response_snippet if attempt else None,
                }
        if time.monotonic() >= deadline:
            return {"delivered": None, "status": None, "category": None, "duration_ms": None, "error": None,
                    "response": None, "state": state}
        time.sleep(_POLL_SECONDS)
