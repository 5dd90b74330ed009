"""Live streams of a merchant's events (``GET /v1/stream``): fan-out through Redis, resume from the store.

Ingest publishes each new event's id and type on the merchant's Redis channel
once its batch has committed (``notice``, sent in ingest's Redis pipeline), so
every web process — every replica — hears of every event whichever process
recorded it. Each process keeps one subscription (``Hub``) and copies each
notice into the bounded queue of every open stream of that merchant; a stream
whose queue is full (its reader is not keeping up) is dropped rather than
waited on, so ingest and the other streams never wait for it, and its
connection is hung up at once (``Listener.on_overflow``): a reader that never
reads leaves its stream blocked in a write that would otherwise never return.
A dropped client, like any other, reconnects with ``Last-Event-ID`` and
resumes from the store (``resume_after``).

A process reads and serialises each announced event once for all its streams
(``Frames``): twenty streams of one merchant cost one read per event, not twenty.

"After" is by ``(received_at, id)``. ``received_at`` is stamped before the
batch writes, so an event may commit a moment after one stamped later (two web
processes writing at once); a resume therefore goes back ``window`` seconds
before the given event, and clients drop ids they already have (``webhook-id``
is the event id, as for every webhook).
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import json
import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import redis
from sqlalchemy import and_, or_, select

from payhook_shared.events import webhook_body
from payhook_shared.store import Event, Store

log = logging.getLogger(__name__)

CHANNEL_PREFIX = "payhook:stream:"
# How often the subscription's reader wakes with nothing to read, to notice a stop.
_POLL_SECONDS = 1.0
# Events read from the store per query while resuming.
_PAGE = 200


def channel(merchant_id: str) -> str:
    """The Redis channel a merchant's new events are announced on."""
    return CHANNEL_PREFIX + merchant_id


def notice(event_row: dict[str, Any]) -> tuple[str, str]:
    """The ``(channel, text)`` that announces a newly recorded event: its id and type, never the event itself."""
    return channel(event_row["merchant_id"]), json.dumps({"id": event_row["id"], "type": event_row["type"]})


@dataclasses.dataclass(frozen=True)
class Notice:
    """One announced event."""

    id: str
    type: str


class Listener:
    """One open stream's buffer of notices; ``dropped`` once it overflowed or the subscription broke.

    ``on_overflow`` (if set) is called once, when the buffer overflows: the stream's writer may be
    blocked on a reader that never reads, and only hanging up its connection ends that write.
    """

    def __init__(self, merchant_id: str, size: int):
        self.merchant_id = merchant_id
        # ``None`` wakes the stream to end it (``Hub.close_all``).
        self.queue: queue.Queue[Notice | None] = queue.Queue(maxsize=size)
        self.dropped = False
        self.on_overflow: Callable[[], None] | None = None

    def offer(self, item: Notice) -> None:
        """Buffer ``item``, or drop the stream if its reader is that far behind: never wait for it."""
        try:
            self.queue.put_nowait(item)
        except queue.Full:
            if self.dropped:
                return
            self.dropped = True
            log.info("closing a live stream of %s: a slow reader, %d events behind", self.merchant_id,
                     self.queue.maxsize)
            if self.on_overflow is not None:
                self.on_overflow()


class Hub:
    """One process's subscription to every merchant's channel, shared by its open streams.

    The reader (a greenlet under gunicorn's gevent workers) starts with the
    first stream, so nothing runs in a process that serves none, nor before a fork.
    """

    def __init__(self, redis_url: str, buffer: int):
        self.redis_url = redis_url
        self.buffer = buffer
        self._lock = threading.Lock()
        self._listeners: dict[str, set[Listener]] = {}
        self._subscribed = threading.Event()
        self._reader: threading.Thread | None = None

    def open(self, merchant_id: str, timeout: float = 5.0) -> Listener:
        """A new listener on ``merchant_id``'s events, once the subscription is live.

        Raises:
          redis.ConnectionError: if Redis cannot be subscribed to within ``timeout``.
        """
        listener = Listener(merchant_id, self.buffer)
        with self._lock:
            self._listeners.setdefault(merchant_id, set()).add(listener)
            if self._reader is None or not self._reader.is_alive():
                self._reader = threading.Thread(target=self._read, name="payhook-stream-hub", daemon=True)
                self._reader.start()
        if not self._subscribed.wait(timeout):
            self.close(listener)
            raise redis.ConnectionError("the stream subscription is not live")
        return listener

    def close(self, listener: Listener) -> None:
        """Forget ``listener``; the reader stops once no stream is open."""
        with self._lock:
            listeners = self._listeners.get(listener.merchant_id)
            if listeners is not None:
                listeners.discard(listener)
                if not listeners:
                    del self._listeners[listener.merchant_id]

    def close_all(self) -> None:
        """End every open stream now (the process is stopping): each wakes, finishes, and its client resumes elsewhere."""
        with self._lock:
            listeners = [listener for group in self._listeners.values() for listener in group]
        for listener in listeners:
            listener.dropped = True
            try:
                listener.queue.put_nowait(None)
            except queue.Full:
                pass  # a full queue wakes its reader anyway

    def _read(self) -> None:
        while True:
            with self._lock:
                if not self._listeners:
                    self._reader = None
                    return
            client = redis.Redis.from_url(self.redis_url, socket_keepalive=True)
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            try:
                pubsub.psubscribe(CHANNEL_PREFIX + "*")
                pubsub.get_message(timeout=_POLL_SECONDS)  # the confirmation: notices flow from here on
                self._subscribed.set()
                while self._any_open():
                    message = pubsub.get_message(timeout=_POLL_SECONDS)
                    if message is not None:
                        self._dispatch(message)
                return
            except redis.RedisError:
                log.warning("stream subscription lost; open streams are dropped to resume", exc_info=True)
                self._drop_all()
                time.sleep(_POLL_SECONDS)
            finally:
                pubsub.close()
                client.close()

    def _any_open(self) -> bool:
        with self._lock:
            if self._listeners:
                return True
            # Cleared under the lock, so an open() that comes next starts a reader and waits for it.
            self._subscribed.clear()
            self._reader = None
            return False

    def _drop_all(self) -> None:
        # Notices published while unsubscribed are lost: every stream must resume from the store.
        with self._lock:
            self._subscribed.clear()
            for listeners in self._listeners.values():
                for listener in listeners:
                    listener.dropped = True

    def _dispatch(self, message: dict[str, Any]) -> None:
        name = message["channel"].decode()
        try:
            data = json.loads(message["data"])
            item = Notice(data["id"], data["type"])
        except (ValueError, KeyError, TypeError):
            log.warning("ignoring a malformed stream notice on %s", name)
            return
        with self._lock:
            listeners = list(self._listeners.get(name[len(CHANNEL_PREFIX):], ()))
        for listener in listeners:
            listener.offer(item)


class StreamSlots:
    """The cap on concurrent streams per API key, counted in Redis so it holds across processes and replicas.

    Each open stream is a member of the key's sorted set, scored by when it last
    showed life; a stream whose process died stops refreshing and no longer counts after ``ttl`` seconds.
    """

    def __init__(self, client: redis.Redis, limit: int, ttl: float):
        self.client = client
        self.limit = limit
        self.ttl = ttl

    def acquire(self, key_id: str) -> str | None:
        """A slot id for a new stream of ``key_id``, or ``None`` when its streams are at the cap."""
        slot, name, now = uuid.uuid4().hex, self._name(key_id), time.time()
        pipe = self.client.pipeline(transaction=True)
        pipe.zremrangebyscore(name, "-inf", now - self.ttl)
        pipe.zadd(name, {slot: now})
        pipe.zcard(name)
        pipe.expire(name, int(self.ttl) + 1)
        count = pipe.execute()[2]
        if count > self.limit:
            self.release(key_id, slot)
            return None
        return slot

    def refresh(self, key_id: str, slot: str) -> None:
        """Mark the stream alive."""
        self.client.zadd(self._name(key_id), {slot: time.time()})
        self.client.expire(self._name(key_id), int(self.ttl) + 1)

    def release(self, key_id: str, slot: str) -> None:
        """Free the stream's slot."""
        self.client.zrem(self._name(key_id), slot)

    @staticmethod
    def _name(key_id: str) -> str:
        return f"payhook:streams:{key_id}"


class _Frame:
    """One event's frame, or the promise of it while the first stream to want it reads it."""

    def __init__(self) -> None:
        self.ready = threading.Event()
        self.owner: str | None = None
        self.text: str | None = None


class Frames:
    """The frames of the events announced last, shared by every stream of the process.

    Each stream of a merchant gets every notice, all at once: without this, each would read the
    event and serialise it again, and twenty open streams made each callback cost twenty reads.
    The first stream to want an event reads it; the others wait for that read, not a read of their own.
    """

    def __init__(self, store: Store, size: int = 256, wait: float = 5.0):
        self.store = store
        self.size = size
        self.wait = wait
        self._lock = threading.Lock()
        self._frames: collections.OrderedDict[str, _Frame] = collections.OrderedDict()

    def get(self, merchant_id: str, event_id: str) -> str | None:
        """The frame of the merchant's event ``event_id``, or ``None`` if it is not theirs (or gone)."""
        with self._lock:
            entry = self._frames.get(event_id)
            first = entry is None
            if first:
                entry = self._frames[event_id] = _Frame()
                while len(self._frames) > self.size:
                    self._frames.popitem(last=False)
        if first:
            try:
                event = load(self.store, merchant_id, event_id)
                if event is not None:
                    entry.owner, entry.text = event.merchant_id, frame(event)
            finally:
                entry.ready.set()
                if entry.text is None:  # not theirs, gone, or the read failed: nothing to share
                    with self._lock:
                        if self._frames.get(event_id) is entry:
                            del self._frames[event_id]
        elif not entry.ready.wait(self.wait) or entry.text is None:
            event = load(self.store, merchant_id, event_id)
            return frame(event) if event is not None else None
        return entry.text if entry.owner == merchant_id else None


def frame(event: Event) -> str:
    """One Server-Sent Event: the webhook body and headers the event's endpoints get, less the signature."""
    body = webhook_body(event).decode()
    data = {"id": event.id, "type": event.type,
            "headers": {"content-type": "application/json", "webhook-id": event.id}, "body": body}
    return f"id: {event.id}\nevent: {event.type}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


def load(store: Store, merchant_id: str, event_id: str) -> Event | None:
    """The merchant's event ``event_id``, if it is theirs."""
    with store.read() as session:
        event = session.get(Event, event_id)
        if event is None or event.merchant_id != merchant_id:
            return None
        session.expunge(event)
        return event


def resume_after(store: Store, merchant_id: str, last: Event, window: float,
                 types: frozenset[str] | None) -> Iterator[Event]:
    """The merchant's events from ``window`` seconds before ``last`` on, in ``(received_at, id)`` order, ``last`` excepted."""
    cursor: tuple[dt.datetime, str] = (last.received_at - dt.timedelta(seconds=window), "")
    while True:
        query = select(Event).where(
            Event.merchant_id == merchant_id,
            or_(Event.received_at > cursor[0], and_(Event.received_at == cursor[0], Event.id > cursor[1])),
        ).order_by(Event.received_at, Event.id).limit(_PAGE)
        if types:
            query = query.where(Event.type.in_(types))
        with store.read() as session:
            page = list(session.execute(query).scalars())
            for event in page:
                session.expunge(event)
        for event in page:
            if event.id != last.id:
                yield event
        if len(page) < _PAGE:
            return
        cursor = (page[-1].received_at, page[-1].id)
