"""``GET /v1/stream``: a merchant's events as Server-Sent Events, as they are recorded.

Each event is sent as it commits, with ``id:`` its event id; a client that
reconnects with ``Last-Event-ID`` gets what it missed from the store first
(``stream.resume_after``). Heartbeats (SSE comments) keep idle connections open.
A stream waits in a greenlet under gunicorn's gevent workers, not a thread.

A reader that stops reading is hung up on once its stream's buffer of notices
overflows (``stream.Listener``): under gunicorn the connection's kernel send
buffer is kept small, so such a stream blocks after a few dozen events rather
than after megabytes of them, and until its hang-up it costs one append to its
buffer per notice: it is not woken, and nothing is read or written for it.
A stream that keeps up wakes once per notice (a committed batch), whatever the
batch's size, and writes the batch's frames at once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import struct
import time
from collections.abc import Callable, Iterator

import redis
from flask import Blueprint, Response, current_app, request, stream_with_context

from payhook_shared.store import Merchant

from .. import auth, stream
from ..errors import InvalidPayload, NotFound, TooManyStreams

log = logging.getLogger(__name__)

bp = Blueprint("stream", __name__, url_prefix="/v1")
bp.before_request(auth.require_api_key)

# The kernel's send buffer for a stream's connection. Left to autotuning, a reader that never reads
# lets the server write megabytes (thousands of events, each read and framed) before its write blocks.
SEND_BUFFER_BYTES = 32 * 1024


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


def _connection() -> socket.socket | None:
    """The client's socket when gunicorn serves the request (not under the test client)."""
    return request.environ.get("gunicorn.socket")


def _hang_up(sock: socket.socket) -> Callable[[], None]:
    """A call that ends ``sock``'s connection at once, even while a write to it is blocked.

    The shutdown goes through a duplicate of the descriptor: gevent's own ``shutdown`` would throw
    "file descriptor closed" into the blocked writer, where this wakes it with a broken pipe,
    which gunicorn takes as the client gone. Linger 0: the close resets, dropping what is unsent.
    """
    def hang_up() -> None:
        with contextlib.suppress(OSError):
            duplicate = socket.socket(sock.family, sock.type, fileno=os.dup(sock.fileno()))
            try:
                duplicate.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                duplicate.shutdown(socket.SHUT_RDWR)
            finally:
                duplicate.close()
    return hang_up


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
    frames: stream.Frames = current_app.extensions["payhook.stream_frames"]
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
    sock = _connection()
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER_BYTES)
        listener.on_overflow = _hang_up(sock)

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
            notices = listener.take(timeout=settings.stream_heartbeat_seconds)
            if listener.dropped:
                break
            if not notices:
                sent.clear()  # caught up: the resumed events are behind every notice still to come
                yield ": heartbeat\n\n"
                continue
            wanted = [n.id for n in notices if n.id not in sent and not (types and n.type not in types)]
            # One write for everything that came meanwhile (never an empty one: that would end the chunked body).
            text = "".join(frames.get(merchant_id, wanted)) if wanted else ""
            if text:
                yield text
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
