"""Sending events again: ``POST /v1/events/<id>/resend``, ``POST /v1/endpoints/<id>/replay``, ``/v1/replays``.

Both are audited and only change rows (``payhook_shared.replays``): the
delivery-worker sends. A replay runs in the background, a batch per message;
``GET /v1/replays/<id>`` shows its progress. A merchant key acts on its own
merchant's events and endpoints only: anything else answers 404 exactly as an
unknown id does.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import Blueprint, current_app, jsonify
from marshmallow import Schema, ValidationError, fields, validate, validates_schema
from sqlalchemy import select

from payhook_shared.store import Replay

from .. import auth
from ..errors import NotFound
from ..reads import Scope
from ..schemas import DEFAULT_PAGE, MAX_PAGE, json_body, load, query
from ..services.endpoints import endpoint_in_scope
from ..services.replays import recent_replays, replay_json, resend_event, send, start_replay

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


def _store():
    return current_app.extensions["payhook.store"]


def _scope() -> Scope:
    return Scope.of(auth.current_principal())


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
