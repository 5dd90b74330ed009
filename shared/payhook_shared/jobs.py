"""Jobs in the store, carried by Redis: claiming, enqueuing and sweeping.

A job (a delivery or an email) is a row with a state. Its Redis message only
says "look at row X now". A worker *claims* the row before working on it, so a
duplicate message — which at-least-once delivery makes inevitable — finds
nothing to do. The *sweeper* makes the row, not Redis, the record: every tick
it enqueues jobs that are due but whose message Redis no longer holds (lost in
a flush or restart, never sent because Redis was down, or a retry whose time
has come), and frees jobs whose worker died mid-attempt.

A message Redis still holds may be lost all the same: Dramatiq's fetch moves
ids into the fetching worker's ack set in one script, and if the reply never
reaches the worker (Redis shut down between running the script and sending
its answer, which the append-only file keeps) those ids stay in the set of a
worker that is alive, so Dramatiq never hands them out again. The sweeper
treats a message fetched and left unclaimed for longer than a claim's lease
as lost.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import uuid
from collections.abc import Callable
from typing import Any

import dramatiq
from sqlalchemy import and_, or_, select, update

from .broker import REDIS_ID, RedisBroker
from .messages import _Message
from .priority import queue_names
from .store import JobState, Store
from .store.models import utcnow

log = logging.getLogger(__name__)

PENDING, SENDING = JobState.PENDING.value, JobState.SENDING.value


def plan(message: _Message, redis_id: str | None = None) -> dramatiq.Message:
    """A Dramatiq message for ``message`` with its Redis id fixed in advance (``redis_id``, or a new one)."""
    return message.to_dramatiq(**{REDIS_ID: redis_id or new_redis_id()})


def new_redis_id() -> str:
    """A Redis id for a message to be planned later: rows can name it before the message exists."""
    return str(uuid.uuid4())


def record(job: Any, message: dramatiq.Message) -> None:
    """Note on the job row which Redis message will carry it."""
    job.queue_name = message.queue_name
    job.message_id = message.options[REDIS_ID]


def new_row(message: dramatiq.Message | None, now: dt.datetime, **columns: Any) -> dict[str, Any]:
    """The columns of a new job due ``now``, carried by ``message``, for a Core insert.

    Without a message, the caller names the carrying message itself (``queue_name``, ``message_id``).
    """
    carried = ({"queue_name": message.queue_name, "message_id": message.options[REDIS_ID]} if message is not None
               else {"queue_name": None, "message_id": None})
    return {**carried, **columns, "state": PENDING, "attempts": 0, "next_attempt_at": now, "created_at": now,
            "updated_at": now}


def claiming(model: type, job_id: Any, lease_until: Any, now: Any) -> Any:
    """The conditional UPDATE that claims a due job (see ``claim``), to execute or to build on.

    The arguments are values or ``bindparam``s, so a caller can build the statement once.
    """
    return (
        update(model)
        .where(
            model.id == job_id,
            or_(
                and_(model.state == PENDING, model.next_attempt_at <= now),
                and_(model.state == SENDING, model.lease_until < now),
            ),
        )
        .values(state=SENDING, lease_until=lease_until, attempts=model.attempts + 1, message_id=None,
                updated_at=now)
        .execution_options(synchronize_session=False)
    )


def claim(session: Any, model: type, job_id: str, lease: dt.timedelta, now: dt.datetime | None = None) -> bool:
    """Take a due job for one attempt; ``False`` if it is not due, done, dead or held by another worker.

    The claim is one conditional UPDATE, so two workers holding duplicate
    messages can never both attempt the same job.
    """
    now = now or utcnow()
    return session.execute(claiming(model, job_id, now + lease, now)).rowcount == 1


def release(session: Any, model: type, job_id: str, retry_at: dt.datetime) -> bool:
    """Hand back a claimed job untried: pending again from ``retry_at``, its claim's attempt not counted.

    For a worker that claimed a job but may not attempt it yet (its endpoint is
    at a limit). ``message_id`` stays empty, so the sweeper enqueues the job
    again when it is due. ``False`` if the job was not held in a claim.
    """
    stmt = (
        update(model)
        .where(model.id == job_id, model.state == SENDING)
        .values(state=PENDING, lease_until=None, next_attempt_at=retry_at, attempts=model.attempts - 1,
                message_id=None)
        .execution_options(synchronize_session=False)
    )
    return session.execute(stmt).rowcount == 1


class Periodic:
    """Runs ``task`` every ``interval`` seconds in a daemon thread, in one process at a time.

    Leadership is a short Redis lock renewed each tick, so any number of worker
    processes may start one and exactly one does the work; if it dies, another
    takes over once the lock expires.

    With ``idle_interval``, ``task`` returns how many seconds it may sleep (``None``: ``interval``), and
    the leader sleeps that long, between ``interval`` and ``idle_interval``; the others look for a vacant
    lead every ``idle_interval``. Without it, what ``task`` returns is ignored.
    """

    def __init__(self, client: Any, name: str, interval: float, task: Callable[[], object], *,
                 idle_interval: float | None = None):
        self.client = client
        self.name = name
        self.interval = interval
        self.task = task
        self.idle_interval = max(interval, idle_interval) if idle_interval is not None else None
        self._lock_key = f"payhook:leader:{name}"
        self._me = uuid.uuid4().hex
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _is_leader(self) -> bool:
        # Outlives the leader's longest sleep, so a live leader keeps its lead.
        ttl_ms = int(max(self.interval * 5, 5.0, 2 * (self.idle_interval or 0)) * 1000)
        if self.client.set(self._lock_key, self._me, nx=True, px=ttl_ms):
            return True
        if self.client.get(self._lock_key) == self._me.encode():
            self.client.pexpire(self._lock_key, ttl_ms)
            return True
        return False

    def _loop(self) -> None:
        wait = self.interval
        while not self._stop.wait(wait):
            wait = self.idle_interval or self.interval
            try:
                if self._is_leader():
                    wanted = self.task()
                    wait = self.interval
                    if self.idle_interval is not None and wanted is not None:
                        wait = min(max(float(wanted), self.interval), self.idle_interval)
            except Exception:
                log.exception("%s tick failed; will retry", self.name)

    def start(self) -> None:
        """Start ticking."""
        self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop ticking and release leadership."""
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)
        try:
            if self.client.get(self._lock_key) == self._me.encode():
                self.client.delete(self._lock_key)
        except Exception:
            log.debug("could not release %s lock", self.name, exc_info=True)


class Sweeper:
    """Re-enqueues due jobs whose Redis message is gone, and frees expired claims.

    ``build`` turns job rows (id, merchant_id, priority and any event_id), all of one priority and at most
    ``group`` of them, into the protocol message that carries them. One sweeper per job
    family does the work at a time (see ``Periodic``), so any number of worker
    processes may run one. ``fetched_grace`` is how long a fetched message may
    wait in a worker before its claim; pass the job's lease. ``clock`` tells what is due (tests move it
    instead of waiting). It sweeps every ``interval`` while any job is under way or due; with none, it
    sleeps until the next one falls due, ``idle_interval`` at most (a job claimed meanwhile and handed
    back for later is seen that much late at worst).
    """

    def __init__(self, store: Store, broker: RedisBroker, model: type, family: str,
                 build: Callable[[list[Any]], _Message], *, interval: float = 1.0, grace: float = 5.0,
                 fetched_grace: float = 60.0, batch: int = 500, group: int = 1, idle_interval: float | None = None,
                 clock: Callable[[], dt.datetime] = utcnow):
        self.clock = clock
        self.store = store
        self.broker = broker
        self.model = model
        self.family = family
        self.build = build
        self.interval = interval
        self.grace = dt.timedelta(seconds=grace)
        self.fetched_grace = dt.timedelta(seconds=fetched_grace)
        self.batch = batch
        self.group = group
        # (job id, message id) -> when this sweeper first saw the message fetched with its job unclaimed.
        self._fetched_since: dict[tuple[Any, str], dt.datetime] = {}
        self._periodic = Periodic(broker.client, f"sweeper-{family}", interval, self._tick,
                                  idle_interval=idle_interval)
        # Dramatiq returns a dead worker's unacked messages during "maintenance",
        # which it runs on a random 0.1 % of commands; this twin runs it on every one.
        self._maintainer = RedisBroker(
            client=broker.client, namespace=broker.namespace, middleware=[],
            heartbeat_timeout=broker.heartbeat_timeout, maintenance_chance=1_000_000,
        )

    def run_once(self, now: dt.datetime | None = None) -> int:
        """One sweep; returns how many jobs were enqueued."""
        now = now or self.clock()
        model = self.model
        with self.store.write() as session:
            # A claim whose lease ran out belongs to a worker that died mid-attempt.
            session.execute(
                update(model)
                .where(model.state == SENDING, model.lease_until < now)
                .values(state=PENDING, lease_until=None, message_id=None)
                .execution_options(synchronize_session=False)
            )
        with self.store.read() as session:
            # Columns, not ORM objects: during a backlog every sweep reads a full batch of live jobs.
            # A job names its event when it has one (deliveries, emails; not replays).
            event = (model.event_id,) if hasattr(model, "event_id") else ()
            rows = session.execute(
                select(model.id, *event, model.merchant_id, model.priority, model.queue_name,
                       model.message_id, model.updated_at)
                .where(model.state == PENDING, model.next_attempt_at <= now)
                .order_by(model.next_attempt_at)
                .limit(self.batch)
            ).all()
        # A job enqueued moments ago may not have reached Redis yet; leave it be.
        settled = [r for r in rows if r.message_id is None or r.updated_at <= now - self.grace]
        with_message = [r for r in settled if r.message_id]
        # Asked once per message: one carries several deliveries.
        carriers = list(dict.fromkeys((r.queue_name, r.message_id) for r in with_message))
        alive = dict(zip(carriers, self.broker.existing(carriers)))
        lost = [r for r in with_message if not alive[(r.queue_name, r.message_id)]]
        stranded = self._stranded([r for r in with_message if alive[(r.queue_name, r.message_id)]], now)
        orphans = [r for r in settled if r.message_id is None] + lost + stranded
        return self._enqueue(orphans)

    def _stranded(self, held: list[Any], now: dt.datetime) -> list[Any]:
        """The jobs of ``held`` whose message was fetched and still unclaimed ``fetched_grace`` after this saw it.

        Redis does not say when a message was fetched, so the clock starts
        when a sweep first finds it fetched; a new leader starts afresh.
        """
        carriers = list(dict.fromkeys((r.queue_name, r.message_id) for r in held))
        fetched = dict(zip(carriers, self.broker.fetched(carriers)))
        since = {}
        stranded = []
        for job in held:
            if not fetched[(job.queue_name, job.message_id)]:
                continue
            key = (job.id, job.message_id)
            since[key] = self._fetched_since.get(key, now)
            if since[key] <= now - self.fetched_grace:
                stranded.append(job)
        self._fetched_since = since
        if stranded:
            log.warning("%d %s message(s) fetched but never claimed (a fetch whose answer was lost); enqueuing "
                        "their jobs again", len(stranded), self.family)
        return stranded

    def _enqueue(self, jobs: list[Any]) -> int:
        by_priority: dict[int, list[Any]] = {}
        for job in jobs:
            by_priority.setdefault(job.priority, []).append(job)
        groups = [rows[i:i + self.group] for rows in by_priority.values() for i in range(0, len(rows), self.group)]
        sent = 0
        for group in groups:
            redis_id = new_redis_id()
            queue = self.build(group[:1]).queue_name
            with self.store.write() as session:
                # Compare-and-set: if a worker touched the row since we read it, it is not ours to resend.
                mine = [job for job in group if session.execute(
                    update(self.model)
                    .where(self.model.id == job.id, self.model.state == PENDING,
                           self.model.message_id.is_(None) if job.message_id is None
                           else self.model.message_id == job.message_id)
                    .values(queue_name=queue, message_id=redis_id)
                    .execution_options(synchronize_session=False)
                ).rowcount]
            if mine:
                self.broker.enqueue(plan(self.build(mine), redis_id))
                sent += len(mine)
        if sent:
            log.info("sweeper enqueued %d %s job(s)", sent, self.family)
        return sent

    def _requeue_from_dead_workers(self) -> None:
        for queue in queue_names(self.family):
            self._maintainer.do_qsize(queue)

    def idle_for(self, now: dt.datetime | None = None) -> float:
        """Seconds until a sweep can have work: 0 while a job is claimed (it may be handed back) or due."""
        now = now or self.clock()
        model = self.model
        with self.store.read() as session:
            if session.execute(select(model.id).where(model.state == SENDING).limit(1)).first():
                return 0.0
            due = session.execute(select(model.next_attempt_at).where(model.state == PENDING)
                                  .order_by(model.next_attempt_at).limit(1)).scalar()
        return float("inf") if due is None else max(0.0, (due - now).total_seconds())

    def _tick(self) -> float:
        self._requeue_from_dead_workers()
        self.run_once()
        return self.idle_for()

    def start(self) -> None:
        """Sweep every ``interval`` seconds in a daemon thread."""
        self._periodic.start()

    def stop(self) -> None:
        """Stop sweeping and release leadership."""
        self._periodic.stop()
