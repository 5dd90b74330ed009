"""The event catalog and test events: ``GET /v1/event-types`` and ``POST /v1/endpoints/<id>/test``.

A test event is the catalog's example of a type, built by the real
normaliser, recorded with a ``test:`` dedupe key (so its body says
``"test": true``) and one delivery, to the endpoint under test only. It sends
no email and raises no operational event.

The attempt is the delivery-worker's, and the request waits for it: the one
sending path signs (Standard Webhooks, with the endpoint's current secrets),
checks the address against the SSRF guard and pins it, honours the endpoint's
rate limit and in-flight cap shared by every worker process, and records the
attempt in the delivery's history — none of which the web process could do
without a second, drifting copy of that code and outbound network access of
its own. The worker gives a test one attempt, skips the circuit breaker and
leaves the endpoint's health alone. The request polls the delivery's row (a
cheap primary-key read; the web serves requests as greenlets, so waiting holds
no thread) until the attempt is recorded, at most ``ENDPOINT_TEST_WAIT``
seconds; past that it answers ``202`` with the delivery's id to look up later.
"""

from __future__ import annotations

import time

from flask import Blueprint, current_app, jsonify
from sqlalchemy import select

from payhook_shared import catalog, ids, jobs
from payhook_shared.messages import DeliverWebhook
from payhook_shared.priority import Priority
from payhook_shared.store import Delivery, DeliveryAttempt, Endpoint, Event, JobState
from payhook_shared.store.models import utcnow

from .. import auth
from ..errors import InvalidPayload, NotFound
from .events import normalise_api_event
from .schemas import EndpointTestSchema, EventCreateSchema, json_body, load

bp = Blueprint("event_types", __name__, url_prefix="/v1")
bp.before_request(auth.require_api_key)

# Tests go ahead of the merchant's traffic: someone is waiting for the answer.
PRIORITY = Priority.URGENT
_POLL_SECONDS = 0.05


@bp.get("/event-types")
def list_event_types():
    """Every type of webhook Payhook sends: description, JSON Schema of ``data`` and an example body."""
    return jsonify(data=[entry.as_json(api_event) for entry in catalog.ENTRIES])


def test_types() -> list[str]:
    """The types an endpoint can be sent a test of: each catalog entry's example type."""
    return [entry.example_type for entry in catalog.ENTRIES]


def api_event(payload: dict):
    """An ``api`` example through the real ``POST /v1/events`` validation and normaliser."""
    return normalise_api_event(load(EventCreateSchema(), payload))


@bp.post("/endpoints/<endpoint_id>/test")
def test_endpoint(endpoint_id: str):
    """Send one example event of ``type``, marked test, to this endpoint; answer with the attempt's outcome."""
    _, payload = json_body()
    event_type = load(EndpointTestSchema(), payload)["type"]
    store = current_app.extensions["payhook.store"]
    with store.read() as session:
        endpoint = session.get(Endpoint, endpoint_id)
        principal = auth.current_principal()
        if endpoint is None or not (principal.is_admin or endpoint.merchant_id == principal.merchant_id):
            raise NotFound(f"no endpoint {endpoint_id}")
    answer = send_test(endpoint.id, endpoint.merchant_id, event_type)
    return jsonify(answer), 200 if answer["delivered"] is not None else 202


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
    message = jobs.plan(DeliverWebhook(delivery_id=delivery_id, event_id=event_id, merchant_id=merchant_id,
                                       priority=PRIORITY))
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
