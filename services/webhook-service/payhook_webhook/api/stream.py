"""``GET /v1/stream``: a merchant's events as Server-Sent Events, as they are recorded.

Each event is sent as it commits, with ``id:`` its event id; a client that
reconnects with ``Last-Event-ID`` gets what it missed from the store first
(``stream.resume_after``). Heartbeats (SSE comments) keep idle connections open.
A stream waits in a greenlet under gunicorn's gevent workers, not a thread.
"""

from __future__ import annotations

import logging
import queue
import time
from collections.abc import Iterator

import redis
from flask import Blueprint, Response, current_app, request, stream_with_context

from payhook_shared.store import Merchant

from .. import auth, stream
from ..errors import InvalidPayload, NotFound, TooManyStreams

log = logging.getLogger(__name__)

bp = Blueprint("stream", __name__, url_prefix="/v1")
bp.before_request(auth.require_api_key)


def _merchant_id() -> str:
    principal = auth.current_principal()
    requested = request.args.get("merchant_id") or None
    if principal.is_admin:
        if requested is None:
            raise InvalidPayload("merchant_id is required with an admin API key",
                                 {"merchant_id": ["is required with an admin API key"]})
        with current_app.extensions["payhook.store"].read() as session:
            if session.get(Merchant, requested) is None:
                raise NotFound(f"no merchant {requested}")
        return requested
    if requested is not None and requested != principal.merchant_id:
        raise NotFound(f"no merchant {requested}")
    return principal.merchant_id


def _types() -> frozenset[str] | None:
    given = request.args.get("types", "")
    types = frozenset(t.strip() for t in given.split(",") if t.strip())
    return types or None


@bp.get("/stream")
def live_stream():
    """Stream the merchant's events (``?types=a,b`` to filter); ``Last-Event-ID`` resumes after that event."""
    merchant_id = _merchant_id()
    types = _types()
    settings = current_app.extensions["payhook.settings"]
    store = current_app.extensions["payhook.store"]
    hub: stream.Hub = current_app.extensions["payhook.stream_hub"]
    slots: stream.StreamSlots = current_app.extensions["payhook.stream_slots"]
    last_id = request.headers.get("Last-Event-ID") or request.args.get("last_event_id")
    last = stream.load(store, merchant_id, last_id) if last_id else None
    if last_id and last is None:
        raise NotFound(f"no event {last_id}")
    key_id = auth.current_principal().key_id
    slot = slots.acquire(key_id)
    if slot is None:
        raise TooManyStreams(f"this API key already has {settings.stream_max_per_key} live streams open")
    try:
        # Listening before reading the store: an event committed meanwhile is in one or the other.
        listener = hub.open(merchant_id)
    except redis.RedisError:
        slots.release(key_id, slot)
        raise

    def events() -> Iterator[str]:
        sent: set[str] = set()
        yield f"retry: 2000\n: streaming events of {merchant_id}\n\n"
        if last is not None:
            for event in stream.resume_after(store, merchant_id, last, settings.stream_resume_window, types):
                sent.add(event.id)
                yield stream.frame(event)
        refreshed = time.monotonic()
        while not listener.dropped:
            if time.monotonic() - refreshed > settings.stream_heartbeat_seconds:
                slots.refresh(key_id, slot)
                refreshed = time.monotonic()
            try:
                item = listener.queue.get(timeout=settings.stream_heartbeat_seconds)
            except queue.Empty:
                sent.clear()  # caught up: the resumed events are behind every notice still to come
                yield ": heartbeat\n\n"
                continue
            if item is None:
                break
            if item.id in sent or (types and item.type not in types):
                continue
            event = stream.load(store, merchant_id, item.id)
            if event is not None:
                yield stream.frame(event)
        # Its reader fell a whole buffer behind, the subscription broke or the process is stopping:
        # the client resumes from the store.
        log.info("closed a live stream of %s", merchant_id)

    def end() -> None:
        hub.close(listener)
        slots.release(key_id, slot)

    response = Response(stream_with_context(events()), mimetype="text/event-stream",
                        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
    # On the response's close, not in the generator: a client gone before the first byte never starts it.
    response.call_on_close(end)
    return response
