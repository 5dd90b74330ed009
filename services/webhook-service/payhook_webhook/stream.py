"""Live streams of a merchant's events (``GET /v1/stream``): fan-out through Redis, resume from the store.

Once a batch of events has committed, ingest publishes one notice per merchant
on the merchant's Redis channel: the ids and types of that merchant's new
events (``notices``, sent in ingest's Redis pipeline), so every web process —
every replica — hears of every event whichever process recorded it. Each
process keeps one subscription (``Hub``) and appends each notice to the buffer
of every open stream of that merchant (``Listener``); a stream whose buffer
holds more than its limit of events (its reader is not keeping up) is dropped
rather than waited on, so ingest and the other streams never wait for it, and
its connection is hung up at once (``Listener.on_overflow``): a reader that
never reads leaves its stream blocked in a write that would otherwise never
return. A dropped client, like any other, reconnects with ``Last-Event-ID``
and resumes from the store (``resume_after``).

Everything is per batch, not per event: one notice, one wake-up of each
stream that waits for one, one read of the batch's events from the store per
process shared by all its streams (``Frames``), one write per stream. A stream
blocked in a write to a reader that does not read costs each notice one
append to its buffer, until it is writable again or hung up.

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
import functools
import json
import logging
import threading
import time
import types
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import redis
from sqlalchemy import and_, any_, bindparam, or_, select
from sqlalchemy.dialects import postgresql

from payhook_shared.events import webhook_body
from payhook_shared.store import Event, Store
from payhook_shared.store.compiled import Compiled

log = logging.getLogger(__name__)

CHANNEL_PREFIX = "payhook:stream:"
# How often the subscription's reader wakes with nothing to read, to notice a stop.
_POLL_SECONDS = 1.0
# Events read from the store per query while resuming.
_PAGE = 200


def channel(merchant_id: str) -> str:
    """The Redis channel a merchant's new events are announced on."""
    return CHANNEL_PREFIX + merchant_id


def notices(event_rows: Iterable[dict[str, Any]]) -> list[tuple[str, str]]:
    """The ``(channel, text)`` notices that announce newly recorded events: one per merchant, ids and types only."""
    by_merchant: dict[str, list[tuple[str, str]]] = {}
    for row in event_rows:
        by_merchant.setdefault(row["merchant_id"], []).append((row["id"], row["type"]))
    return [(channel(merchant_id), json.dumps(events)) for merchant_id, events in by_merchant.items()]


@dataclasses.dataclass(frozen=True)
class Notice:
    """One announced event."""

    id: str
    type: str


class Listener:
    """One open stream's buffer of announced batches; ``dropped`` once it overflowed or the subscription broke.

    ``on_overflow`` (if set) is called once, when the buffer overflows: the stream's writer may be
    blocked on a reader that never reads, and only hanging up its connection ends that write.
    """

    def __init__(self, merchant_id: str, size: int):
        self.merchant_id = merchant_id
        self.size = size
        self.dropped = False
        self.on_overflow: Callable[[], None] | None = None
        self._batches: collections.deque[tuple[Notice, ...]] = collections.deque()
        # Events buffered = offered - taken; each count has one writer (the subscription, the stream).
        self._offered = 0
        self._taken = 0
        # Set while the stream is not waiting for a batch: an offer then appends and does nothing else.
        self._wake = threading.Event()
        self._wake.set()

    def offer(self, batch: tuple[Notice, ...]) -> None:
        """Buffer ``batch``, or drop the stream if its reader is that far behind: never wait for it.

        A stream blocked in a write, or busy, is not woken: it takes what is buffered when it next looks.
        """
        if self.dropped:
            return
        self._offered += len(batch)
        if self._offered - self._taken > self.size:
            self.dropped = True
            log.info("closing a live stream of %s: a slow reader, %d events behind", self.merchant_id, self.size)
            self._wake.set()
            if self.on_overflow is not None:
                self.on_overflow()
            return
        self._batches.append(batch)
        if not self._wake.is_set():
            self._wake.set()

    def take(self, timeout: float) -> list[Notice]:
        """Every buffered notice, oldest first, waiting up to ``timeout`` seconds for one; ``[]`` if none came
        (or the stream was dropped meanwhile)."""
        if not self._batches:
            self._wake.clear()
            if not self._batches:  # looked at again after the clear: an offer just before it did not set it
                self._wake.wait(timeout)
        taken: list[Notice] = []
        while self._batches:
            taken.extend(self._batches.popleft())
        self._taken += len(taken)
        return taken

    def end(self) -> None:
        """Drop the stream and wake it, to finish (``Hub.close_all``)."""
        self.dropped = True
        self._wake.set()


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
            listener.end()

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
                    listener.end()

    def _dispatch(self, message: dict[str, Any]) -> None:
        name = message["channel"].decode()
        with self._lock:
            listeners = list(self._listeners.get(name[len(CHANNEL_PREFIX):], ()))
        if not listeners:
            return
        try:
            batch = tuple(Notice(event_id, event_type) for event_id, event_type in json.loads(message["data"]))
        except (ValueError, TypeError):
            log.warning("ignoring a malformed stream notice on %s", name)
            return
        # The same batch, by reference, for every stream of the merchant.
        for listener in listeners:
            listener.offer(batch)


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
    events and serialise them again, and twenty open streams made each callback cost twenty reads.
    The first stream to want a batch's events reads them, in one query; the others wait for that read,
    not a read of their own.
    """

    def __init__(self, store: Store, size: int = 256, wait: float = 5.0):
        self.store = store
        self.size = size
        self.wait = wait
        self._lock = threading.Lock()
        self._frames: collections.OrderedDict[str, _Frame] = collections.OrderedDict()

    def get(self, merchant_id: str, event_ids: Sequence[str]) -> list[str]:
        """The frames of the merchant's events ``event_ids``, in that order, less those not theirs (or gone)."""
        entries: list[tuple[str, _Frame]] = []
        mine: dict[str, _Frame] = {}
        with self._lock:
            for event_id in event_ids:
                entry = self._frames.get(event_id)
                if entry is None:
                    entry = self._frames[event_id] = mine[event_id] = _Frame()
                entries.append((event_id, entry))
            while len(self._frames) > self.size:
                self._frames.popitem(last=False)
        if mine:
            try:
                for event in load_many(self.store, merchant_id, list(mine)):
                    entry = mine[event.id]
                    entry.owner, entry.text = event.merchant_id, frame(event)
            finally:
                for entry in mine.values():
                    entry.ready.set()
                with self._lock:  # not theirs, gone, or the read failed: nothing to share
                    for event_id, entry in mine.items():
                        if entry.text is None and self._frames.get(event_id) is entry:
                            del self._frames[event_id]
        texts: dict[str, str] = {}
        unread: list[str] = []
        for event_id, entry in entries:
            if event_id in mine or (entry.ready.wait(self.wait) and entry.text is not None):
                if entry.owner == merchant_id and entry.text is not None:
                    texts[event_id] = entry.text
            else:  # another stream's read failed or is stuck: read it here
                unread.append(event_id)
        if unread:
            texts.update((event.id, frame(event)) for event in load_many(self.store, merchant_id, unread))
        return [texts[event_id] for event_id in event_ids if event_id in texts]


def frame(event: Any) -> str:
    """One Server-Sent Event: the webhook body and headers the event's endpoints get, less the signature.

    ``event`` is an ``Event`` or a read-only copy of one (``load_many``).
    """
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


def load_many(store: Store, merchant_id: str, event_ids: Sequence[str]) -> list[Any]:
    """Those of ``event_ids`` that are the merchant's events, in one query, in no particular order.

    On PostgreSQL the statement runs on the driver connection and the rows come back as read-only
    copies with the events' attributes: each process reads every announced batch while it has a
    stream that keeps up, and through a session that read cost three times the client CPU.
    """
    if store.dialect == "postgresql":
        statement = _loading_many(store.engine.dialect)
        with store.driver() as conn:
            rows = conn.execute(statement.sql, statement.params(
                {"event_ids": list(event_ids), "merchant_id": merchant_id})).fetchall()
        return [statement.objects(row)[0] for row in rows]
    with store.read() as session:
        events = list(session.execute(
            select(Event).where(Event.id.in_(event_ids), Event.merchant_id == merchant_id)).scalars())
        for event in events:
            session.expunge(event)
        return events


# Built once: compiling the statement costs more than running it.
@functools.cache
def _loading_many(dialect: Any) -> Compiled:
    table = Event.__table__
    ids = any_(bindparam("event_ids", type_=postgresql.ARRAY(table.c.id.type)))
    statement = select(table).where(table.c.id == ids, table.c.merchant_id == bindparam("merchant_id"))
    return Compiled(statement, dialect, ((types.SimpleNamespace, [c.key for c in table.columns]),))


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
