"""Admin-only test traffic: ``POST /test/priority/<merchant_id>/<level>``.

Records synthetic ``payhook.test`` events at a chosen priority through the
real ingest path, so operators and ``make test-priority`` can check that
priority holds under backlog on a running stack.
"""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify
from sqlalchemy import select

from payhook_shared import ids
from payhook_shared.events import PAYHOOK, SUCCEEDED, TEST_PREFIX, TEST_TYPE, NormalisedEvent
from payhook_shared.priority import Priority
from payhook_shared.store import Event

from .. import auth, ingest, merchants
from ..errors import InvalidPayload, NotFound
from ..schemas import PriorityTestSchema, json_body, load

# The blueprint keeps its name "testing": it is in the endpoint label of the request metrics.
bp = Blueprint("testing", __name__, url_prefix="/test")
bp.before_request(auth.require_api_key)

@bp.post("/priority/<merchant_id>/<level>")
def priority_test(merchant_id: str, level: str):
    """Record ``count`` test events at ``level``; returns their ids and when each was received."""
    auth.require_admin()
    try:
        priority = Priority.parse(level)
    except ValueError:
        raise InvalidPayload(f"level must be one of {', '.join(p.label for p in Priority)}") from None
    _, body = json_body(optional=True)
    count = load(PriorityTestSchema(), body)["count"]
    store, broker = current_app.extensions["payhook.store"], current_app.extensions["payhook.broker"]
    merchant = merchants.load(store, merchant_id)
    if merchant is None:
        raise NotFound(f"no merchant {merchant_id}")
    # Written in batches, so a backlog builds faster than any pool drains it, whatever the machine.
    events = [(NormalisedEvent(provider="payhook", source=PAYHOOK, type=TEST_TYPE, status=SUCCEEDED,
                               dedupe_key=f"{TEST_PREFIX}{ids.new_token()}", details={"priority": priority.label}),
               b"{}") for _ in range(count)]
    recorded = [r.event_id for r in ingest.record_many(store, broker, merchant, events, priority)]
    with store.read() as session:
        received = dict(session.execute(select(Event.id, Event.received_at).where(Event.id.in_(recorded))).all())
    return jsonify(priority=priority.label, events=[
        {"id": event_id, "received_at": received[event_id].timestamp()} for event_id in recorded])
