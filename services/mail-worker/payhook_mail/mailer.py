"""Sending one recorded email, from claim to recorded outcome."""

from __future__ import annotations

import datetime as dt
import logging
import random
import time

import jinja2
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from payhook_shared import addresses, notices
from payhook_shared.jobs import claim
from payhook_shared.logs import bind
from payhook_shared.messages import SendEmail
from payhook_shared.store import Email, JobState, Merchant
from payhook_shared.store.models import utcnow

from . import metrics, render
from .errors import PermanentMailError, TransientMailError
from .runtime import Runtime

log = logging.getLogger(__name__)

SENT, RETRY, DEAD, SKIPPED, SUPPRESSED = "sent", "retry", "dead", "skipped", "suppressed"
CAP_WINDOW = dt.timedelta(hours=1)


def send(rt: Runtime, message: SendEmail) -> str:
    """Send one email at most once; returns ``sent``, ``retry``, ``dead``, ``skipped`` or ``suppressed``.

    The row's state is the sent-log: an email already sent, or claimed by
    another worker, is skipped. A customer email past its merchant's hourly
    cap is not sent but recorded as ``suppressed``.
    """
    settings = rt.settings
    with bind(email_id=message.email_id, event_id=message.event_id, merchant_id=message.merchant_id):
        now = utcnow()
        with rt.store.write() as session:
            if not claim(session, Email, message.email_id, dt.timedelta(seconds=settings.lease_seconds), now):
                metrics.email(metrics.UNKNOWN_TEMPLATE, SKIPPED)
                return SKIPPED
            email = session.get(Email, message.email_id)
            capped = _over_cap(session, settings.customer_emails_per_hour, email, now)
            # Committed with the claim, before sending: a sign-in link works once its email arrives.
            context = None if capped else notices.sending_context(session, email)
        if capped:
            outcome = _finish(rt, email, SUPPRESSED, f"suppressed: merchant {email.merchant_id} reached its cap of "
                                                     f"{settings.customer_emails_per_hour} customer emails per hour")
            metrics.email(email.template, outcome)
            return outcome
        started = time.monotonic()
        try:
            _check_recipients(email.recipients)
            rendered = render.render(rt.templates, email.template, context)
            mime = render.build(rendered, sender=settings.mail_from, recipients=email.recipients,
                                message_id=f"<{email.id}@{settings.message_id_domain}>")
            rt.transport.send(mime)
        except TransientMailError as exc:
            outcome = _finish(rt, email, RETRY, str(exc))
        except PermanentMailError as exc:
            outcome = _finish(rt, email, DEAD, str(exc))
        except (jinja2.TemplateError, ValueError) as exc:
            outcome = _finish(rt, email, DEAD, f"cannot render {email.template!r}: {type(exc).__name__}: {exc}")
        else:
            outcome = _finish(rt, email, SENT, None)
        metrics.email(email.template, outcome, time.monotonic() - started)
        return outcome


def _over_cap(session: Session, cap: int, email: Email, now: dt.datetime) -> bool:
    """Whether ``email`` (just claimed) is a customer email its merchant has no room left for this hour.

    Counted in the claim's transaction, the merchant's row locked first (PostgreSQL; SQLite writes one at a
    time anyway), so concurrent workers decide one after another and together never pass the cap.
    """
    if not cap or email.template not in notices.CUSTOMER_TEMPLATES or email.merchant_id is None:
        return False
    # NO KEY UPDATE: serialises the workers without blocking ingest's inserts that reference the merchant.
    session.execute(select(Merchant.id).where(Merchant.id == email.merchant_id).with_for_update(key_share=True))
    mine = (Email.merchant_id == email.merchant_id) & Email.template.in_(notices.CUSTOMER_TEMPLATES)
    sent = session.scalar(select(func.count()).select_from(Email).where(
        mine, Email.state == JobState.DONE.value, Email.sent_at >= now - CAP_WINDOW))
    sending = session.scalar(select(func.count()).select_from(Email).where(
        mine, Email.state == JobState.SENDING.value, Email.id != email.id))
    return sent + sending >= cap


def _check_recipients(recipients: list[str]) -> None:
    if not recipients:
        raise PermanentMailError("no recipients")
    invalid = [r for r in recipients if not addresses.is_valid(r)]
    if invalid:
        raise PermanentMailError(f"invalid address: {', '.join(map(repr, invalid))}")


def _finish(rt: Runtime, email: Email, outcome: str, error: str | None) -> str:
    settings = rt.settings
    now = utcnow()
    values: dict = {"lease_until": None, "last_error": error}
    if outcome == SENT:
        values.update(state=JobState.DONE.value, sent_at=now)
        log.info("sent %s to %d recipient(s)", email.template, len(email.recipients))
    elif outcome == SUPPRESSED:
        values.update(state=JobState.SUPPRESSED.value)
        log.warning("email %s suppressed: %s", email.template, error)
    elif outcome == RETRY and email.attempts <= len(settings.retry_schedule):
        delay = settings.retry_schedule[email.attempts - 1] * (1 + random.uniform(-settings.retry_jitter,
                                                                                  settings.retry_jitter))
        values.update(state=JobState.PENDING.value, next_attempt_at=now + dt.timedelta(seconds=delay))
        log.warning("sending %s failed (%s); retry in %.1f s", email.template, error, delay)
    else:
        outcome = DEAD
        values.update(state=JobState.DEAD.value)
        log.error("email %s dead: %s", email.template, error)
    with rt.store.write() as session:
        session.execute(update(Email).where(Email.id == email.id).values(**values)
                        .execution_options(synchronize_session=False))
    return outcome
