"""Sending events again: ``POST /v1/events/<id>/resend``, ``POST /v1/endpoints/<id>/replay``, ``/v1/replays``.

Both are audited and only change rows (``payhook_shared.replays``): the
delivery-worker sends. A replay runs in the background, a batch per message;
``GET /v1/replays/<id>`` shows its progress. A merchant key acts on its own
merchant's events and endpoints only: anything else answers 404 exactly as an
unknown id does.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from flask import Blueprint, current_app, jsonify
from marshmallow import Schema, ValidationError, fields, validate, validates_schema
from sqlalchemy import select

from payhook_shared import replays
from payhook_shared.store import Endpoint, Event, Replay

from .. import audit, auth
from ..errors import InvalidPayload, NotFound
from ..reads import Scope
from .events_read import endpoint_in_scope
from .schemas import DEFAULT_PAGE, MAX_PAGE, json_body, load, query

log = logging.getLogger(__name__)

bp = Blueprint("replays", __name__, url_prefix="/v1")
bp.before_request(auth.require_api_key)


class ResendSchema(Schema):
    endpoint_id = fields.String(load_default=None, validate=validate.Length(1, 40))


class ReplaySchema(Schema):
    since = fields.AwareDateTime(required=True, default_timezone=dt.timezone.utc)
    until = fields.AwareDateTime(load_default=None, default_timezone=dt.timezone.utc)
    types = fields.List(fields.String(validate=validate.Length(1, 100)), load_default=None, allow_none=True,
                        validate=validate.Length(1, 100))
    only_failed = fields.Boolean(load_default=False)

    @validates_schema
    def _range(self, data: dict[str, Any], **kwargs: Any) -> None:
        if data.get("until") is not None and data["until"] <= data["since"]:
            raise ValidationError("must be after since", "until")


class ReplayListSchema(Schema):
    limit = fields.Integer(load_default=DEFAULT_PAGE, validate=validate.Range(1, MAX_PAGE))
    after = fields.String(load_default=None, validate=validate.Length(1, 40))


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def replay_json(replay: Replay) -> dict[str, Any]:
    """A replay job and its progress as the API shows it."""
    state = {"pending": "running", "sending": "running", "done": "done", "dead": "stopped"}[replay.state]
    return {"id": replay.id, "merchant_id": replay.merchant_id, "endpoint_id": replay.endpoint_id,
            "state": state, "since": _iso(replay.since), "until": _iso(replay.until), "types": replay.types,
            "only_failed": replay.only_failed, "events_scanned": replay.scanned,
            "deliveries_created": replay.created, "deliveries_revived": replay.revived,
            "events_skipped": replay.skipped, "last_event_id": replay.cursor, "error": replay.last_error,
            "created_at": _iso(replay.created_at), "finished_at": _iso(replay.finished_at)}


def _store():
    return current_app.extensions["payhook.store"]


def _scope() -> Scope:
    return Scope.of(auth.current_principal())


def _enabled(endpoint: Endpoint) -> Endpoint:
    if not endpoint.enabled:
        raise InvalidPayload("endpoint_id: the endpoint is disabled; enable it first",
                             {"endpoint_id": ["the endpoint is disabled; enable it first"]})
    return endpoint


def resend_event(session, scope: Scope, principal: auth.Principal, event_id: str,
                 endpoint_id: str | None) -> replays.Resent:
    """Resend one event to one endpoint of its merchant, or to every enabled endpoint that takes it; audited.

    The API and the console both resend through here.

    Raises:
      NotFound: for an unknown or out-of-scope event or endpoint alike.
      InvalidPayload: for a disabled endpoint, or when no endpoint takes the event.
    """
    event = session.scalar(scope.only(select(Event), Event.merchant_id).where(Event.id == event_id))
    if event is None:
        raise NotFound(f"no event {event_id}")
    if endpoint_id is not None:
        endpoint = session.scalar(select(Endpoint).where(Endpoint.id == endpoint_id,
                                                         Endpoint.merchant_id == event.merchant_id))
        if endpoint is None:
            raise NotFound(f"no endpoint {endpoint_id}")
        targets = [_enabled(endpoint)]
    else:
        targets = [e for e in session.scalars(select(Endpoint).where(Endpoint.merchant_id == event.merchant_id)
                                              .order_by(Endpoint.id))
                   if e.enabled and replays.wants(e, event.type)]
        if not targets:
            raise InvalidPayload("endpoint_id: no enabled endpoint takes this event; name one to send it to",
                                 {"endpoint_id": ["no enabled endpoint takes this event"]})
    resent = replays.resend(session, event, targets)
    audit.record(session, principal, "resend_event", event.id, endpoints=resent.endpoints)
    return resent


def start_replay(session, scope: Scope, principal: auth.Principal, endpoint_id: str, body: dict[str, Any]):
    """Record a replay job for an endpoint, audited; returns it and the message to send once committed.

    The API and the console both start replays through here.

    Raises:
      NotFound: for an unknown or out-of-scope endpoint alike.
      InvalidPayload: for a disabled endpoint.
    """
    endpoint = _enabled(endpoint_in_scope(session, scope, endpoint_id))
    replay, message = replays.start(session, endpoint, body["since"], body["until"], body["types"],
                                    body["only_failed"], principal.key_id)
    audit.record(session, principal, "replay", endpoint.id, replay_id=replay.id, since=body["since"].isoformat(),
                 until=body["until"].isoformat() if body["until"] else None, types=body["types"],
                 only_failed=body["only_failed"])
    return replay, message


def send(message) -> None:
    """Send a replay's first message; if Redis refuses, the delivery-worker's sweeper sends it."""
    try:
        current_app.extensions["payhook.broker"].enqueue(message)
    except Exception:
        log.warning("could not enqueue a replay; the sweeper will", exc_info=True)


def recent_replays(session, endpoint_id: str, limit: int = DEFAULT_PAGE, after: str | None = None) -> list[Replay]:
    """An endpoint's replays, newest first (the caller has checked the endpoint is in scope)."""
    stmt = select(Replay).where(Replay.endpoint_id == endpoint_id)
    if after:
        stmt = stmt.where(Replay.id < after)
    return list(session.scalars(stmt.order_by(Replay.id.desc()).limit(limit)))


@bp.post("/events/<event_id>/resend")
def resend(event_id: str):
    """Deliver an event again to one endpoint (``endpoint_id``) or all that take it, delivered before or not."""
    _, payload = json_body(optional=True)
    body = load(ResendSchema(), payload)
    with _store().write() as session:
        resent = resend_event(session, _scope(), auth.current_principal(), event_id, body["endpoint_id"])
    return jsonify(event_id=resent.event_id, endpoints=resent.endpoints), 202


@bp.post("/endpoints/<endpoint_id>/replay")
def replay(endpoint_id: str):
    """Deliver to this endpoint every matching event received in the range, in the background."""
    _, payload = json_body()
    body = load(ReplaySchema(), payload)
    with _store().write() as session:
        job, message = start_replay(session, _scope(), auth.current_principal(), endpoint_id, body)
        answer = replay_json(job)
    send(message)
    return jsonify(answer), 202


@bp.get("/replays/<replay_id>")
def get_replay(replay_id: str):
    """A replay job and its progress."""
    with _store().read() as session:
        row = session.scalar(_scope().only(select(Replay), Replay.merchant_id).where(Replay.id == replay_id))
        if row is None:
            raise NotFound(f"no replay {replay_id}")
        return jsonify(replay_json(row))


@bp.get("/endpoints/<endpoint_id>/replays")
def list_replays(endpoint_id: str):
    """An endpoint's replays, newest first, keyset-paginated."""
    params = query(ReplayListSchema())
    with _store().read() as session:
        endpoint = endpoint_in_scope(session, _scope(), endpoint_id)
        rows = recent_replays(session, endpoint.id, params["limit"] + 1, params["after"])
        more = len(rows) > params["limit"]
        rows = rows[:params["limit"]]
        return jsonify(data=[replay_json(r) for r in rows], has_more=more,
                       next_after=rows[-1].id if more else None)
