"""Sending events again: resending one event, and replaying an endpoint's events in the background.

Both are audited and only change rows (``payhook_shared.replays``): the delivery-worker sends.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import current_app
from sqlalchemy import select

from payhook_shared import replays
from payhook_shared.store import Endpoint, Event, Replay

from .. import audit, auth
from ..errors import InvalidPayload, NotFound
from ..reads import Scope
from ..schemas import DEFAULT_PAGE
from .common import iso
from .endpoints import endpoint_in_scope

log = logging.getLogger(__name__)


def replay_json(replay: Replay) -> dict[str, Any]:
    """A replay job and its progress as the API shows it."""
    state = {"pending": "running", "sending": "running", "done": "done", "dead": "stopped"}[replay.state]
    return {"id": replay.id, "merchant_id": replay.merchant_id, "endpoint_id": replay.endpoint_id,
            "state": state, "since": iso(replay.since), "until": iso(replay.until), "types": replay.types,
            "only_failed": replay.only_failed, "events_scanned": replay.scanned,
            "deliveries_created": replay.created, "deliveries_revived": replay.revived,
            "events_skipped": replay.skipped, "last_event_id": replay.cursor, "error": replay.last_error,
            "created_at": iso(replay.created_at), "finished_at": iso(replay.finished_at)}


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
