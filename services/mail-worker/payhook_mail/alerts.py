"""The operator alert check: dead letters piling up mean someone should look.

Every mail-worker process may run it; the alert's ``dedupe_key`` (alert and
hour) lets only one email per hour through, however many processes check.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading

from sqlalchemy import func, select

from payhook_shared import notices
from payhook_shared.broker import RedisBroker
from payhook_shared.store import Delivery, Email, JobState, Store
from payhook_shared.store.models import utcnow

from .settings import Settings

log = logging.getLogger(__name__)

DEAD_LETTERS = "dead_letters"


def check_dead_letters(settings: Settings, store: Store, broker: RedisBroker, now: dt.datetime | None = None) -> bool:
    """Queue an operator alert if dead deliveries and emails reach the threshold; whether one was queued."""
    if not settings.alert_emails:
        return False
    now = now or utcnow()
    with store.read() as session:
        deliveries = session.scalar(select(func.count()).select_from(Delivery)
                                    .where(Delivery.state == JobState.DEAD.value))
        emails = session.scalar(select(func.count()).select_from(Email).where(Email.state == JobState.DEAD.value))
    total = deliveries + emails
    if total < settings.alert_dead_letter_threshold:
        return False
    email = notices.operator_alert(
        settings.alert_emails, alert=DEAD_LETTERS,
        summary=f"{total} dead letters (threshold {settings.alert_dead_letter_threshold})",
        figures={"dead deliveries": deliveries, "dead emails": emails,
                 "threshold": settings.alert_dead_letter_threshold},
        window=now.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H"))
    with store.write() as session:
        message = notices.stage(session, email)
    if message is None:
        return False
    broker.enqueue(message)
    log.warning("operator alert queued: %d dead letters", total)
    return True


class AlertLoop:
    """Runs ``check_dead_letters`` every ``ALERT_INTERVAL`` seconds in a daemon thread."""

    def __init__(self, settings: Settings, store: Store, broker: RedisBroker):
        self.settings, self.store, self.broker = settings, store, broker
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _loop(self) -> None:
        while not self._stop.wait(self.settings.alert_interval):
            try:
                check_dead_letters(self.settings, self.store, self.broker)
            except Exception:
                log.exception("alert check failed; will retry")

    def start(self) -> None:
        """Start checking, unless no alert address is configured."""
        if self.settings.alert_emails:
            self._thread = threading.Thread(target=self._loop, name="alert-check", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop checking."""
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)
