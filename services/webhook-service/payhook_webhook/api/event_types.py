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

from flask import Blueprint, current_app, jsonify

from payhook_shared import catalog
from payhook_shared.store import Endpoint

from .. import auth
from ..errors import NotFound
from ..schemas import EndpointTestSchema, json_body, load
from ..services.events import api_event, send_test

bp = Blueprint("event_types", __name__, url_prefix="/v1")
bp.before_request(auth.require_api_key)


@bp.get("/event-types")
def list_event_types():
    """Every type of webhook Payhook sends: description, JSON Schema of ``data`` and an example body."""
    # The catalog is fixed for the life of the process and costs milliseconds to build: once per app.
    body = current_app.extensions.get("payhook.event_types")
    if body is None:
        body = current_app.extensions["payhook.event_types"] = current_app.json.dumps(
            {"data": [entry.as_json(api_event) for entry in catalog.ENTRIES]})
    return current_app.response_class(body, mimetype="application/json")


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
