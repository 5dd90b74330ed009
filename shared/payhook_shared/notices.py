"""Every email Payhook sends, built one way: an ``Email`` row and its ``SendEmail`` message.

The webhook-service (payment notices and buyer receipts at ingest), the
delivery-worker (endpoint failing / disabled) and the operator alert check all
create emails; they do it only through the builders here, so each kind always
gets the same template, recipients, context, priority and ``dedupe_key``.

A builder returns an unsaved ``Email``, or ``None`` when the merchant's
preferences turn that notice off or leave it with nobody to send to. ``stage``
then adds it to the caller's transaction and returns the Dramatiq message to
enqueue after the commit; a notice whose ``dedupe_key`` exists already is
skipped, so a repeated check never mails twice.

Merchant preferences live in ``Merchant.settings["notifications"]``, read
through the settings schema (``merchant_settings``)::

    {"payment_received": {"enabled": true, "recipients": ["owner@shop.test"]},
     "payment_failed":   {"enabled": true},
     "receipt":          {"enabled": true, "fallback_email": "buyer@demo.test"},
     "endpoint_failing": {"enabled": false}}

Missing keys take the defaults in ``DEFAULTS``; recipients default to the
merchant's ``notification_email``. A receipt goes to the event's
``customer_email``; ``fallback_email`` (for demos) is used when there is none.

Contexts hold only what the templates show: amounts as minor units and
currency, phone numbers already masked, endpoint URLs without credentials or
query strings, never a secret.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import urllib.parse
from typing import Any

import dramatiq
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from . import ids, jobs, merchant_settings, sign_in
from .callbacks import mpesa
from .events import FAILED, SUCCEEDED
from .logs import mask_phone
from .merchant_settings import (
    ENDPOINT_DISABLED, ENDPOINT_FAILING, PAYMENT_FAILED, PAYMENT_RECEIVED, PAYMENT_UNRESOLVED, RECEIPT,
    TRANSACTION_UNRESOLVED,
)
from .messages import SendEmail
from .priority import Priority
from .store import Email, Endpoint, Merchant
from .store.models import utcnow

OPERATOR_ALERT = "operator_alert"
SIGN_IN_LINK = "sign_in_link"

#: Which merchant notices are on when the merchant has said nothing.
DEFAULTS = merchant_settings.NOTICE_DEFAULTS

#: Alerts and endpoint trouble travel on queues served before payment notices and receipts.
PRIORITIES = {
    SIGN_IN_LINK: Priority.URGENT,  # someone is waiting at the sign-in page
    OPERATOR_ALERT: Priority.URGENT,
    ENDPOINT_DISABLED: Priority.URGENT,
    PAYMENT_UNRESOLVED: Priority.URGENT,  # an order waits on it
    TRANSACTION_UNRESOLVED: Priority.URGENT,  # money may have moved, or not
    ENDPOINT_FAILING: Priority.HIGH,
    PAYMENT_FAILED: Priority.HIGH,
    PAYMENT_RECEIVED: Priority.NORMAL,
    RECEIPT: Priority.NORMAL,
}

_INSERT = {"postgresql": pg_insert, "sqlite": sqlite_insert}

#: Emails to addresses a payment names rather than the merchant: capped per merchant by the mail-worker.
CUSTOMER_TEMPLATES = frozenset({RECEIPT})

#: What ``SendEmail.merchant_id`` (required, and logged) says for emails to Payhook's operators.
OPERATOR = "operator"


@dataclasses.dataclass(frozen=True)
class Preference:
    """One merchant's choice for one kind of notice."""

    enabled: bool
    recipients: tuple[str, ...]
    fallback_email: str | None = None


def preference(merchant: Merchant, kind: str) -> Preference:
    """The merchant's preference for ``kind``, defaults filled in; values the schema refuses count as unset."""
    chosen = merchant_settings.notice(merchant.settings, kind)
    default_recipients = [merchant.notification_email] if merchant.notification_email else []
    return Preference(
        enabled=chosen.get("enabled", DEFAULTS.get(kind, False)),
        recipients=tuple(chosen.get("recipients", default_recipients)),
        fallback_email=chosen.get("fallback_email"),
    )


def message_for(email: Email) -> SendEmail:
    """The protocol message that tells a mail-worker to send ``email``."""
    return SendEmail(email_id=email.id, event_id=email.event_id, merchant_id=email.merchant_id or OPERATOR,
                     priority=Priority(email.priority))


def stage(session: Session, email: Email) -> dramatiq.Message | None:
    """Add ``email`` to ``session``'s transaction; the message to enqueue once it commits.

    Returns ``None``, adding nothing, when an email with the same ``dedupe_key`` exists.
    """
    columns, message = planned(email)
    insert = _INSERT[session.get_bind().dialect.name]
    stmt = insert(Email).values(**columns).on_conflict_do_nothing(index_elements=["dedupe_key"]).returning(Email.id)
    return message if session.execute(stmt).scalar_one_or_none() is not None else None


def planned(email: Email, now: dt.datetime | None = None) -> tuple[dict[str, Any], dramatiq.Message]:
    """The row to insert for ``email`` (a pending job due ``now``) and the message that will carry it."""
    message = jobs.plan(message_for(email))
    jobs.record(email, message)
    columns = {c.key: getattr(email, c.key) for c in Email.__table__.columns if getattr(email, c.key) is not None}
    return jobs.new_row(message, now or utcnow(), **columns), message


def _email(kind: str, recipients: list[str] | tuple[str, ...], context: dict[str, Any], dedupe_key: str, *,
           merchant_id: str | None, event_id: str | None = None) -> Email:
    return Email(id=ids.new_id("eml"), merchant_id=merchant_id, event_id=event_id, template=kind,
                 recipients=list(recipients), context=context, priority=int(PRIORITIES[kind]),
                 dedupe_key=dedupe_key)


def _iso(value: dt.datetime | None) -> str | None:
    return value.astimezone(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC") if value else None


def _payment_context(merchant: Merchant, event: Any) -> dict[str, Any]:
    return {
        "merchant_name": merchant.name,
        "event_type": event.type,
        "amount_minor": event.amount_minor,
        "currency": event.currency,
        "receipt": event.receipt,
        "reference": event.reference,
        "phone": mask_phone(event.phone) if event.phone else None,
        "occurred_at": _iso(event.occurred_at),
        "result_desc": event.result_desc,
    }


def _merchant_notice(kind: str, merchant: Merchant, event: Any, event_id: str) -> Email | None:
    pref = preference(merchant, kind)
    if not pref.enabled or not pref.recipients:
        return None
    return _email(kind, pref.recipients, _payment_context(merchant, event), f"{kind}:{event_id}",
                  merchant_id=merchant.id, event_id=event_id)


def payment_received(merchant: Merchant, event: Any, event_id: str) -> Email | None:
    """The merchant's "payment received" notice for a succeeded payment (on by default)."""
    if event.status != SUCCEEDED:
        return None
    return _merchant_notice(PAYMENT_RECEIVED, merchant, event, event_id)


def payment_failed(merchant: Merchant, event: Any, event_id: str) -> Email | None:
    """The merchant's "payment failed" notice (opt-in)."""
    if event.status != FAILED:
        return None
    return _merchant_notice(PAYMENT_FAILED, merchant, event, event_id)


def receipt(merchant: Merchant, event: Any, event_id: str) -> Email | None:
    """The buyer's receipt for a succeeded payment, sent to the event's ``customer_email``."""
    pref = preference(merchant, RECEIPT)
    buyer = event.customer_email or pref.fallback_email
    if event.status != SUCCEEDED or not pref.enabled or not buyer:
        return None
    context = {**_payment_context(merchant, event), "support_email": merchant.notification_email}
    return _email(RECEIPT, [buyer], context, f"{RECEIPT}:{event_id}", merchant_id=merchant.id, event_id=event_id)


def safe_url(url: str) -> str:
    """``url`` without credentials, query or fragment, which may carry secrets."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _endpoint_context(merchant: Merchant, endpoint: Endpoint) -> dict[str, Any]:
    return {"merchant_name": merchant.name, "endpoint_id": endpoint.id, "endpoint_url": safe_url(endpoint.url),
            "endpoint_description": endpoint.description or ""}


def endpoint_failing(merchant: Merchant, endpoint: Endpoint, *, incident_started_at: dt.datetime,
                     failures: int, last_error: str | None = None) -> Email | None:
    """Tell the merchant an endpoint keeps failing; one email per incident."""
    pref = preference(merchant, ENDPOINT_FAILING)
    if not pref.enabled or not pref.recipients:
        return None
    context = {**_endpoint_context(merchant, endpoint), "failures": failures,
               "incident_started_at": _iso(incident_started_at), "last_error": last_error}
    key = f"{ENDPOINT_FAILING}:{endpoint.id}:{incident_started_at.astimezone(dt.timezone.utc).isoformat()}"
    return _email(ENDPOINT_FAILING, pref.recipients, context, key, merchant_id=merchant.id)


def endpoint_disabled(merchant: Merchant, endpoint: Endpoint, *, disabled_at: dt.datetime,
                      reason: str) -> Email | None:
    """Tell the merchant an endpoint was disabled and webhooks to it have stopped."""
    pref = preference(merchant, ENDPOINT_DISABLED)
    if not pref.enabled or not pref.recipients:
        return None
    context = {**_endpoint_context(merchant, endpoint), "reason": reason, "disabled_at": _iso(disabled_at)}
    key = f"{ENDPOINT_DISABLED}:{endpoint.id}:{disabled_at.astimezone(dt.timezone.utc).isoformat()}"
    return _email(ENDPOINT_DISABLED, pref.recipients, context, key, merchant_id=merchant.id)


def payment_unresolved(merchant: Merchant, event: Any, event_id: str | None) -> Email | None:
    """Tell the merchant an STK Push stayed unresolved (``operational.payment_unresolved``'s event); on by default."""
    pref = preference(merchant, PAYMENT_UNRESOLVED)
    if not pref.enabled or not pref.recipients:
        return None
    details = event.details
    context = {"merchant_name": merchant.name, "amount_minor": event.amount_minor, "currency": event.currency,
               "account_reference": details.get("account_reference"),
               "checkout_request_id": details["checkout_request_id"], "pushed_at": details.get("pushed_at"),
               "checks": details.get("checks"), "reason": details.get("reason")}
    return _email(PAYMENT_UNRESOLVED, pref.recipients, context, f"{PAYMENT_UNRESOLVED}:{details['intent_id']}",
                  merchant_id=merchant.id, event_id=event_id)


# What a merchant calls each kind of transaction a QueueTimeOut can leave unresolved.
_TRANSACTION_KINDS = {mpesa.B2C: "B2C payment", mpesa.B2B: "B2B payment", mpesa.REVERSAL: "Reversal"}


def transaction_unresolved(merchant: Merchant, event: Any, event_id: str | None) -> Email | None:
    """Tell the merchant a QueueTimeOut stayed unresolved (``operational.transaction_unresolved``'s event); on by
    default."""
    pref = preference(merchant, TRANSACTION_UNRESOLVED)
    if not pref.enabled or not pref.recipients:
        return None
    details = event.details
    context = {"merchant_name": merchant.name, "kind": _TRANSACTION_KINDS.get(details["event_type"], "Transaction"),
               "originator_conversation_id": details["originator_conversation_id"],
               "timed_out_at": details.get("timed_out_at"), "queries": details.get("queries"),
               "reason": details.get("reason")}
    return _email(TRANSACTION_UNRESOLVED, pref.recipients, context,
                  f"{TRANSACTION_UNRESOLVED}:{details['check_id']}", merchant_id=merchant.id, event_id=event_id)


def operator_alert(recipients: list[str] | tuple[str, ...], *, alert: str, summary: str,
                   figures: dict[str, Any], window: str) -> Email | None:
    """An alert for Payhook's operators (e.g. ``alert="dead_letters"``), at most one per alert and ``window``.

    ``figures`` are the numbers behind the alert, shown as a table; ``window``
    (e.g. the hour, ``"2024-05-01T10"``) decides how often the alert may repeat.
    """
    if not recipients:
        return None
    context = {"alert": alert, "summary": summary, "figures": {str(k): str(v) for k, v in figures.items()},
               "window": window}
    return _email(OPERATOR_ALERT, recipients, context, f"{OPERATOR_ALERT}:{alert}:{window}", merchant_id=None)


def sign_in_link(recipient: str, links: list[dict[str, str]], *, expires_minutes: int, key: str,
                 merchant_id: str | None) -> Email:
    """The console sign-in links asked for at the sign-in page: one ``{"id", "label", "url"}`` per account.

    ``url`` lacks the token: the mail-worker mints it when sending (``sending_context``),
    so the row never holds a usable link; ``key`` (the first link's id) makes the email unique.
    """
    context = {"links": links, "expires_minutes": expires_minutes}
    return _email(SIGN_IN_LINK, [recipient], context, f"{SIGN_IN_LINK}:{key}", merchant_id=merchant_id)


def sending_context(session: Session, email: Email) -> dict[str, Any]:
    """The context to render ``email`` with, as the mail-worker is about to send it.

    For a sign-in email this mints the links' tokens (``sign_in.mint``) in
    ``session``, which must commit before the email goes; other kinds send their
    stored context as it is.
    """
    if email.template == SIGN_IN_LINK:
        return sign_in.mint(session, email.context)
    return email.context
