"""Draining the spool: spooled callbacks into the store once it answers again (see ``spool``).

The ``Drainer`` runs in every web process and one at a time does the work, elected by a Redis lock as the
sweepers are (``payhook_shared.jobs.Periodic``). It records each spooled callback through
``receive.mpesa``, the path a live callback takes, then removes it from the stream. A callback drained
twice (a drainer stopped between the write and the ``XDEL``, or one callback spooled twice) is recorded
once: ingest deduplicates by the event's ``dedupe_key``. Its deliveries and emails follow as usual.
"""

from __future__ import annotations

import hashlib
import logging
import time

from flask import Flask
from sqlalchemy.exc import SQLAlchemyError

from payhook_shared import ids
from payhook_shared.callbacks import parse_json
from payhook_shared.errors import DecodeError
from payhook_shared.jobs import Periodic
from payhook_shared.store import QuarantinedCallback, QuarantineState
from payhook_shared.store.models import utcnow

from . import c2b, metrics, receive
from .errors import StoreUnavailable
from .spool import STREAM, waiting

log = logging.getLogger(__name__)

# Entries read from the stream at a time; a tick goes on until the stream is empty or the store refuses.
DRAIN_BATCH = 100


class Drainer:
    """Moves spooled callbacks into the store, every ``interval`` seconds, in one web process at a time."""

    def __init__(self, app: Flask, interval: float):
        self.app = app
        self.client = app.extensions["payhook.broker"].client
        self._periodic = Periodic(self.client, "spool-drainer", interval, self.drain)
        # A tick ends well within the leader lock's life (Periodic's: 5 intervals, at least 5 s) and the next
        # renews it, so a long backlog never has a second process draining the same entries meanwhile.
        self._budget = 3 * max(interval, 1.0)

    def start(self) -> None:
        """Start draining (in a daemon thread: a greenlet under gunicorn's gevent workers)."""
        self._periodic.start()

    def stop(self) -> None:
        """Stop draining and give up the lead."""
        self._periodic.stop()

    def drain(self) -> int:
        """Record every spooled callback the store takes now; returns how many left the spool.

        Stops at the first the store refuses (it is still down): that one and those after it wait for the
        next call, in order. Stops too after a few seconds, leaving the rest to the next call.
        """
        done = 0
        deadline = time.monotonic() + self._budget
        with self.app.app_context():
            while time.monotonic() < deadline and (entries := self.client.xrange(STREAM, count=DRAIN_BATCH)):
                for entry_id, fields in entries:
                    if time.monotonic() >= deadline:
                        break
                    try:
                        outcome = self._record({k.decode(): v for k, v in fields.items()})
                    except (SQLAlchemyError, StoreUnavailable) as exc:
                        log.warning("the store still refuses spooled callbacks (%s); %d wait",
                                    type(exc).__name__, waiting(self.client))
                        return done
                    self.client.xdel(STREAM, entry_id)
                    metrics.SPOOL_DRAINED.labels(outcome).inc()
                    done += 1
        if done:
            log.info("drained %d spooled callback(s) into the store", done)
        return done

    def _record(self, fields: dict[str, bytes]) -> str:
        """Record one spooled callback; returns what became of it (a ``SPOOL_DRAINED`` outcome)."""
        merchant_id, kind, raw = fields["merchant_id"].decode(), fields["kind"].decode(), fields["body"]
        directory = self.app.extensions["payhook.merchants"]
        merchant = directory.get(merchant_id)
        if merchant is None:
            log.error("spooled %s callback for merchant %s, deleted since (%d bytes, sha256 %s); dropped",
                      kind, merchant_id, len(raw), hashlib.sha256(raw).hexdigest())
            return "unknown_merchant"

        def reload():
            directory.forget(merchant_id)
            return directory.get(merchant_id)

        decision = (c2b.Decision(fields["decision_code"].decode(), fields["decision_reason"].decode())
                    if "decision_code" in fields else None)
        try:
            # The event's received_at is when it is recorded (what retention, the live streams' resume and
            # the delivery latency go by); when Safaricom sent it is kept beside it.
            received = receive.mpesa(merchant, raw, parse_json(raw), kind, reload, decision=decision,
                                     details={"spooled_at": fields["spooled_at"].decode()})
        except DecodeError as exc:
            # It passed when spooled: only a schema changed since (a new release) refuses it now.
            self._quarantine(merchant_id, kind, raw, fields, exc)
            return "quarantined"
        return "duplicate" if received.recorded.duplicate else "recorded"

    def _quarantine(self, merchant_id: str, kind: str, raw: bytes, fields: dict[str, bytes],
                    exc: DecodeError) -> None:
        """Keep a spooled body the schema now refuses, as ``quarantine.keep`` keeps a live one."""
        row = QuarantinedCallback(
            id=ids.new_id("qcb"), merchant_id=merchant_id, provider="mpesa", kind=kind,
            content_type=fields["content_type"].decode(),
            headers={"Content-Type": fields["content_type"].decode(), "X-Request-ID": fields["request_id"].decode()},
            body=raw, reason="schema", error=str(exc), error_fields=exc.messages or None,
            state=QuarantineState.QUARANTINED.value, attempts=0, received_at=utcnow())
        with self.app.extensions["payhook.store"].write() as session:
            session.add(row)
        metrics.QUARANTINED.labels("mpesa", kind).inc()
        log.warning("quarantined a spooled %s callback as %s: %s", kind, row.id, str(exc)[:500])
