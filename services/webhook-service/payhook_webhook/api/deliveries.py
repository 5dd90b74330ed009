"""Deliveries and dead letters: ``/v1/deliveries`` and ``/v1/dead-letters``.

The same operations as the ``payhook-deliveries`` CLI, from
``payhook_shared.deadletters``. A merchant key sees and acts on its own
merchant's deliveries only; filters naming another merchant find nothing.
Retries only reset rows; the delivery-worker's sweeper enqueues them.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import Blueprint, current_app, jsonify

from payhook_shared import deadletters
from payhook_shared.store import Delivery, Endpoint

from .. import auth
from ..errors import NotFound
from ..schemas import (
    DeadLetterFilterSchema, DeadLetterQuerySchema, PurgeSchema, RecoverSchema, json_body, load, query,
)

bp = Blueprint("deliveries", __name__, url_prefix="/v1")
bp.before_request(auth.require_api_key)


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def delivery_json(delivery: Delivery) -> dict[str, Any]:
    """A delivery as the API shows it."""
    return {
        "id": delivery.id, "event_id": delivery.event_id, "endpoint_id": delivery.endpoint_id,
        "merchant_id": delivery.merchant_id, "state": delivery.state, "attempts": delivery.attempts,
        "priority": delivery.priority, "last_status": delivery.last_status,
        "last_category": delivery.last_category, "last_error": delivery.last_error,
        "next_attempt_at": _iso(delivery.next_attempt_at), "dead_at": _iso(delivery.dead_at),
        "delivered_at": _iso(delivery.delivered_at), "created_at": _iso(delivery.created_at),
    }


def _store():
    return current_app.extensions["payhook.store"]


def _scoped(params: dict[str, Any]) -> deadletters.Filter:
    """The filter asked for, narrowed to the caller's own merchant for a merchant key."""
    principal = auth.current_principal()
    merchant_id = params.get("merchant_id")
    if not principal.is_admin:
        if merchant_id not in (None, principal.merchant_id):
            raise NotFound(f"no merchant {merchant_id}")
        merchant_id = principal.merchant_id
    return deadletters.Filter(merchant_id=merchant_id, endpoint_id=params.get("endpoint_id"),
                              category=params.get("category"), since=params.get("since"),
                              until=params.get("until"))


def _own_delivery(session, delivery_id: str) -> Delivery:
    delivery = deadletters.inspect(session, delivery_id)
    if delivery is None or not auth.may_see(delivery.merchant_id):
        raise NotFound(f"no delivery {delivery_id}")
    return delivery


@bp.get("/dead-letters")
def list_dead_letters():
    """Dead letters matching the filters, newest first, keyset-paginated."""
    params = query(DeadLetterQuerySchema())
    with _store().read() as session:
        rows = deadletters.list_dead(session, _scoped(params), params["limit"] + 1, params["after"])
    page = rows[:params["limit"]]
    has_more = len(rows) > params["limit"]
    return jsonify(data=[delivery_json(d) for d in page], has_more=has_more,
                   next_after=page[-1].id if has_more else None)


@bp.post("/dead-letters/retry")
def retry_dead_letters():
    """Retry every dead letter matching the filters in the body."""
    _, body = json_body(optional=True)
    count = deadletters.retry_matching(_store(), _scoped(load(DeadLetterFilterSchema(), body)))
    return jsonify(retried=count)


@bp.post("/dead-letters/purge")
def purge_dead_letters():
    """Delete every dead letter matching the filters; the body must say ``"confirm": true``."""
    _, body = json_body()
    count = deadletters.purge_matching(_store(), _scoped(load(PurgeSchema(), body)))
    return jsonify(purged=count)


@bp.get("/deliveries/<delivery_id>")
def get_delivery(delivery_id: str):
    """A delivery in any state, with every attempt."""
    with _store().read() as session:
        delivery = _own_delivery(session, delivery_id)
        attempts = [{"number": a.number, "started_at": _iso(a.started_at), "duration_ms": a.duration_ms,
                     "status_code": a.status_code, "category": a.category, "error": a.error,
                     "response_snippet": a.response_snippet} for a in delivery.attempt_log]
        return jsonify({**delivery_json(delivery), "attempt_log": attempts})


@bp.post("/deliveries/<delivery_id>/retry")
def retry_delivery(delivery_id: str):
    """Retry one dead letter now, with a fresh schedule (``retried`` is 0 if it is not dead)."""
    with _store().write() as session:
        _own_delivery(session, delivery_id)
        return jsonify(retried=deadletters.retry(session, [delivery_id]))


@bp.post("/endpoints/<endpoint_id>/recover")
def recover_endpoint(endpoint_id: str):
    """Re-deliver every failed delivery of an endpoint created since ``since``."""
    _, body = json_body()
    since = load(RecoverSchema(), body)["since"]
    with _store().read() as session:
        endpoint = session.get(Endpoint, endpoint_id)
        if endpoint is None or not auth.may_see(endpoint.merchant_id):
            raise NotFound(f"no endpoint {endpoint_id}")
    return jsonify(recovered=deadletters.recover(_store(), endpoint_id, since))
