"""Emailed sign-in links: ask at the sign-in page, open the link, press its button, signed in.

Asking: the answer is the same whatever the address, and the address is only
looked up after the answer has gone (see ``views.request_link``), so neither
the page nor its timing tells whether the address belongs to anyone. An
address gets one link per account it may sign in to: the operator account
when ``CONSOLE_OPERATOR_EMAILS`` lists it, and each enabled merchant whose
notification email it is. Links go out through the mail-worker like every
other email, at most ``CONSOLE_LINK_EMAILS_PER_WINDOW`` per address per
``CONSOLE_LOGIN_WINDOW``.

The token is 256 random bits in the link; the store keeps only its SHA-256.
The webhook-service records the link without a token: the mail-worker mints
it as it sends the email (``payhook_shared.sign_in``), so no row, Redis
message or log ever holds a usable link. Opening the link (GET) only shows a
button, so a mail scanner that follows links does not spend it; the button's POST,
carrying the CSRF token, consumes it with one conditional UPDATE, so it works
once, before ``CONSOLE_LINK_MINUTES`` run out. The session then holds the
address and the account, re-checked on every request like an API key.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging

import redis
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from payhook_shared import ids, notices
from payhook_shared.broker import RedisBroker
from payhook_shared.sign_in import hash_token
from payhook_shared.store import Merchant, SignInLink, Store
from payhook_shared.store.models import utcnow

from ..errors import WebhookServiceError
from ..settings import Settings

log = logging.getLogger(__name__)

PATH = "/console/sign-in/"
MAX_EMAIL_LENGTH = 320


class LinkRefused(WebhookServiceError):
    """A sign-in link that is unknown, used, expired, or whose address may no longer sign in."""

    status = 410
    code = "link_refused"


@dataclasses.dataclass(frozen=True)
class Account:
    """What a link signs in to: an operator (``merchant_id`` None) or one merchant."""

    merchant_id: str | None
    label: str


def normalise(email: str) -> str:
    """An address as it is compared: trimmed, lower-case."""
    return email.strip().lower()


def _operators(settings: Settings) -> set[str]:
    return {normalise(e) for e in settings.console_operator_emails}


def accounts(session: Session, settings: Settings, email: str) -> list[Account]:
    """Every account ``email`` may sign in to: operator first, then merchants by name."""
    found = [Account(None, "Operator: every merchant")] if email in _operators(settings) else []
    merchants = session.scalars(select(Merchant).where(func.lower(Merchant.notification_email) == email,
                                                       Merchant.enabled.is_(True)).order_by(Merchant.name))
    return found + [Account(m.id, f"Merchant {m.name} ({m.id})") for m in merchants]


def allowed(session: Session, settings: Settings, email: str, merchant_id: str | None) -> bool:
    """Whether ``email`` may still sign in to that account (the operator list or the merchant's email may change)."""
    if merchant_id is None:
        return email in _operators(settings)
    merchant = session.get(Merchant, merchant_id)
    return bool(merchant and merchant.enabled and merchant.notification_email
                and normalise(merchant.notification_email) == email)


def _within_limit(client: redis.Redis, settings: Settings, email: str) -> bool:
    key = f"payhook:console:link:{hash_token(email)}"
    pipe = client.pipeline()
    pipe.incr(key)
    pipe.expire(key, settings.console_login_window, nx=True)
    return pipe.execute()[0] <= settings.console_link_emails_per_window


def send(store: Store, broker: RedisBroker, settings: Settings, email: str, address: str,
         now: dt.datetime | None = None) -> int:
    """Create a link for every account of ``email`` and queue the email; returns how many links (0: none)."""
    now = now or utcnow()
    email = normalise(email)
    try:
        if not _within_limit(broker.client, settings, email):
            log.warning("sign-in link not sent: too many asked for one address from %s", address)
            return 0
    except redis.RedisError as exc:
        log.error("sign-in link not sent: Redis unavailable (%s)", type(exc).__name__)
        return 0
    base = (settings.console_public_url or settings.public_base_url).rstrip("/")
    with store.write() as session:
        found = accounts(session, settings, email)
        if not found:
            log.info("sign-in link asked for an address with no account, from %s", address)
            return 0
        links = []
        first = None
        for account in found:
            row = SignInLink(id=ids.new_id("sil"), token_hash=None, email=email,
                             merchant_id=account.merchant_id, requested_from=address[:64], created_at=now,
                             expires_at=now + dt.timedelta(minutes=settings.console_link_minutes))
            session.add(row)
            first = first or row
            links.append({"id": row.id, "label": account.label, "url": f"{base}{PATH}"})
        merchant_id = found[0].merchant_id if len(found) == 1 else None
        message = notices.stage(session, notices.sign_in_link(
            email, links, expires_minutes=settings.console_link_minutes, key=first.id, merchant_id=merchant_id))
    try:
        broker.enqueue(message)
    except Exception:
        # Recorded already: the mail-worker's sweeper enqueues it once Redis answers again.
        log.warning("could not enqueue the sign-in email; the sweeper will", exc_info=True)
    log.info("sign-in email queued with %d link(s), asked from %s", len(links), address)
    return len(links)


def _refusal(link: SignInLink | None, now: dt.datetime, minutes: int) -> str | None:
    if link is None:
        return "This sign-in link is not valid. Check that the whole link was opened, or ask for a new one."
    if link.used_at is not None:
        return "This sign-in link has been used already: each link works once. Ask for a new one."
    if link.expires_at <= now:
        return f"This sign-in link has expired: links work for {minutes} minutes. Ask for a new one."
    return None


def find(store: Store, settings: Settings, token: str, now: dt.datetime | None = None) -> SignInLink:
    """The link ``token`` opens, without consuming it.

    Raises:
      LinkRefused: for an unknown, used or expired link, saying which.
    """
    with store.read() as session:
        link = session.scalar(select(SignInLink).where(SignInLink.token_hash == hash_token(token)))
    refusal = _refusal(link, now or utcnow(), settings.console_link_minutes)
    if refusal:
        raise LinkRefused(refusal)
    return link


def consume(store: Store, settings: Settings, token: str, now: dt.datetime | None = None) -> SignInLink:
    """Spend the link ``token`` opens; exactly one request can.

    Raises:
      LinkRefused: for an unknown, used or expired link, or an address that may no longer use it.
    """
    now = now or utcnow()
    digest = hash_token(token)
    with store.write() as session:
        won = session.execute(
            update(SignInLink).where(SignInLink.token_hash == digest, SignInLink.used_at.is_(None),
                                     SignInLink.expires_at > now)
            .values(used_at=now).execution_options(synchronize_session=False)
        ).rowcount == 1
        link = session.scalar(select(SignInLink).where(SignInLink.token_hash == digest))
        if not won:
            raise LinkRefused(_refusal(link, now, settings.console_link_minutes)
                              or "This sign-in link has just been used. Ask for a new one.")
        if not allowed(session, settings, link.email, link.merchant_id):
            raise LinkRefused("This address may no longer sign in to that account. Ask for a new link.")
    return link
