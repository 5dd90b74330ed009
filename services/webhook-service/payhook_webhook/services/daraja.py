"""Daraja through Payhook: a merchant's credentials, STK Push and payment intents.

The API, the console and the ``flask credentials`` commands share these operations. Credentials are
encrypted before they reach the store and are never read back out to anyone: ``credentials_summary``
says only which fields are set. Payhook calls Daraja only at the configured base URL of the
credentials' environment, with the merchant's own Payhook STK callback URL.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import redis
from flask import current_app
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from payhook_shared import ids, money
from payhook_shared.callbacks.mpesa import STK_PUSH
from payhook_shared.daraja.client import DarajaClient
from payhook_shared.daraja.credentials import SECRET_FIELDS, DarajaCredentials
from payhook_shared.daraja.crypto import Cipher
from payhook_shared.events import SUCCEEDED
from payhook_shared.logs import mask_phone
from payhook_shared.store import DarajaCredential, Event, IntentState, Merchant, PaymentIntent, Store
from payhook_shared.store.models import utcnow

from .. import audit, auth
from ..errors import InvalidPayload, NotFound
from ..settings import Settings
from .common import iso
from .merchants import callback_urls

log = logging.getLogger(__name__)

API = "api"
REGISTERED = "registered"
IDEMPOTENCY_LOCK = "payhook:stk-push:{}:{}"


def cipher() -> Cipher:
    """The app's credentials cipher, made on first use from ``CREDENTIALS_KEYS`` (or the development key file).

    Raises:
      CredentialsError: when no key is configured or a key is not a Fernet key.
    """
    app = current_app._get_current_object()
    if "payhook.cipher" not in app.extensions:
        settings = app.extensions["payhook.settings"]
        app.extensions["payhook.cipher"] = Cipher.configured(settings.credentials_keys, settings.credentials_key_file)
    return app.extensions["payhook.cipher"]


def client() -> DarajaClient:
    """The app's Daraja client (built by ``create_app``)."""
    return current_app.extensions["payhook.daraja"]


def build_client(settings: Settings, redis_client: redis.Redis) -> DarajaClient:
    """A Daraja client for ``settings``' base URLs, timeouts and rate limit, caching tokens in ``redis_client``."""
    return DarajaClient({"sandbox": settings.daraja_sandbox_url, "production": settings.daraja_production_url},
                        redis_client, connect_timeout=settings.daraja_connect_timeout,
                        read_timeout=settings.daraja_read_timeout, rate_limit=settings.daraja_rate_limit)


# -- credentials ----------------------------------------------------------------------------------------------

def credentials_summary(row: DarajaCredential | None) -> dict[str, Any]:
    """What may be shown of a merchant's credentials: the environment, the shortcode and which fields are set."""
    if row is None:
        return {"configured": False}
    return {"configured": True, "environment": row.environment, "shortcode": row.shortcode,
            "set": {name: bool(getattr(row, f"{name}_enc")) for name in SECRET_FIELDS},
            "updated_at": iso(row.updated_at)}


def stored_credentials(session: Session, merchant_id: str, for_update: bool = False) -> DarajaCredential | None:
    """The merchant's stored (encrypted) credentials row, if any."""
    stmt = select(DarajaCredential).where(DarajaCredential.merchant_id == merchant_id)
    if for_update:
        stmt = stmt.with_for_update()
    return session.scalars(stmt).one_or_none()


def set_credentials(session: Session, principal: auth.Principal, merchant: Merchant,
                    body: dict[str, Any]) -> DarajaCredential:
    """Store validated ``body`` (``DarajaCredentialsSchema``) as the merchant's credentials, encrypted.

    A secret field left out (or empty) keeps its stored value, so one can be changed alone; a first
    setting needs the consumer key and secret. The audit log names the fields changed, never their values.

    Raises:
      InvalidPayload: naming ``consumer_key``/``consumer_secret`` when a first setting lacks them.
      CredentialsError: when no encryption key is configured.
    """
    box = cipher()
    row = stored_credentials(session, merchant.id, for_update=True)
    if row is None:
        for name in ("consumer_key", "consumer_secret"):
            if not body.get(name):
                raise InvalidPayload(f"{name}: is required the first time credentials are set",
                                     {name: ["is required the first time credentials are set"]})
        row = DarajaCredential(id=ids.new_id("dcr"), merchant_id=merchant.id, version=0)
        session.add(row)
    row.environment = body["environment"]
    row.shortcode = body["shortcode"]
    changed = [name for name in SECRET_FIELDS if body.get(name)]
    for name in changed:
        setattr(row, f"{name}_enc", box.encrypt(body[name]))
    row.version = (row.version or 0) + 1
    row.updated_at = utcnow()
    audit.record(session, principal, "set_daraja_credentials", merchant.id, environment=row.environment,
                 shortcode=row.shortcode, fields=changed)
    session.flush()
    return row


def delete_credentials(session: Session, principal: auth.Principal, merchant: Merchant) -> bool:
    """Remove the merchant's credentials; ``False`` if it had none."""
    row = stored_credentials(session, merchant.id, for_update=True)
    if row is None:
        return False
    session.delete(row)
    audit.record(session, principal, "delete_daraja_credentials", merchant.id)
    session.flush()
    return True


def rotate_credentials(store: Store, box: Cipher) -> int:
    """Re-encrypt every stored secret with ``box``'s first key; the number of credentials rows rewritten.

    Raises:
      CredentialsError: when a secret cannot be decrypted with any of ``box``'s keys (nothing is then changed).
    """
    with store.write() as session:
        rows = session.scalars(select(DarajaCredential).with_for_update()).all()
        for row in rows:
            for name in SECRET_FIELDS:
                value = getattr(row, f"{name}_enc")
                if value:
                    setattr(row, f"{name}_enc", box.rotate(value))
        return len(rows)


def merchant_credentials(session: Session, merchant_id: str) -> DarajaCredentials:
    """The merchant's credentials in the clear, for a call to Daraja.

    Raises:
      InvalidPayload: when the merchant has set none (or none for STK Push).
      CredentialsError: when they cannot be decrypted.
    """
    row = stored_credentials(session, merchant_id)
    if row is None:
        raise InvalidPayload("the merchant has no Daraja credentials: set them first "
                             f"(PUT /v1/merchants/{merchant_id}/daraja-credentials)")
    return DarajaCredentials.from_row(row, cipher())


# -- payment intents ------------------------------------------------------------------------------------------

def intent_json(intent: PaymentIntent) -> dict[str, Any]:
    """A payment intent as the API and console show it (the phone masked, as stored)."""
    return {
        "id": intent.id,
        "merchant_id": intent.merchant_id,
        "checkout_request_id": intent.checkout_request_id,
        "merchant_request_id": intent.merchant_request_id,
        "amount": str(money.format_amount(intent.amount_minor, intent.currency))
        if intent.amount_minor is not None else None,
        "currency": intent.currency,
        "phone": intent.phone,
        "account_reference": intent.account_reference,
        "description": intent.description,
        "state": intent.state,
        "source": intent.source,
        "idempotency_key": intent.idempotency_key,
        "result_code": intent.result_code,
        "event_id": intent.event_id,
        "created_at": iso(intent.created_at),
        "resolved_at": iso(intent.resolved_at),
    }


def _by_idempotency_key(session: Session, merchant_id: str, key: str | None) -> PaymentIntent | None:
    if key is None:
        return None
    return session.scalars(select(PaymentIntent).where(PaymentIntent.merchant_id == merchant_id,
                                                       PaymentIntent.idempotency_key == key)).one_or_none()


def _settle_from_event(session: Session, intent: PaymentIntent) -> None:
    """Settle ``intent`` at once when its STK callback was recorded before it (a fast payer, a late registration)."""
    event = session.scalars(select(Event).where(Event.merchant_id == intent.merchant_id, Event.type == STK_PUSH,
                                                Event.reference == intent.checkout_request_id)
                            .order_by(Event.received_at).limit(1)).one_or_none()
    if event is not None:
        intent.state = (IntentState.COMPLETED if event.status == SUCCEEDED else IntentState.FAILED).value
        intent.result_code, intent.event_id, intent.resolved_at = event.result_code, event.id, event.received_at


def _first_check() -> dict[str, Any]:
    """A new intent's creation time and when the reconciler first asks Daraja about it (``RECONCILE_AFTER`` later)."""
    now = utcnow()
    after = current_app.extensions["payhook.settings"].reconcile_after
    return {"created_at": now, "next_check_at": now + dt.timedelta(seconds=after)}


def _insert_intent(store: Store, intent: PaymentIntent) -> PaymentIntent:
    """Insert ``intent``; one that repeats an idempotency key or a CheckoutRequestID returns the stored one.

    Raises:
      InvalidPayload: naming ``checkout_request_id`` when that id is already another merchant's, or
      ``idempotency_key`` when it was used for another CheckoutRequestID.
    """
    try:
        with store.write() as session:
            _settle_from_event(session, intent)
            session.add(intent)
            session.flush()
            return intent
    except IntegrityError:
        pass
    with store.read() as session:
        existing = _by_idempotency_key(session, intent.merchant_id, intent.idempotency_key) or session.scalars(
            select(PaymentIntent).where(PaymentIntent.checkout_request_id == intent.checkout_request_id)).one()
    if existing.merchant_id != intent.merchant_id:
        raise InvalidPayload("checkout_request_id: is already registered",
                             {"checkout_request_id": ["is already registered"]})
    if existing.checkout_request_id != intent.checkout_request_id:
        raise InvalidPayload("idempotency_key: was used for another CheckoutRequestID",
                             {"idempotency_key": ["was used for another CheckoutRequestID"]})
    return existing


def stk_push(store: Store, merchant_id: str, body: dict[str, Any]) -> tuple[PaymentIntent, bool]:
    """Ask Daraja for an STK Push with the merchant's credentials and record its pending payment intent.

    ``body`` is validated (``StkPushSchema``: phone normalised, amount whole shillings). The same
    ``idempotency_key`` again returns the first push's intent without calling Daraja; the boolean
    says whether this call created it.

    Raises:
      DarajaError: when Daraja refuses or cannot be reached (nothing recorded).
      InvalidPayload: when the merchant has no credentials with a passkey.
    """
    daraja = client()
    settings = current_app.extensions["payhook.settings"]
    # Longer than one push can take: waiting for another process's token, OAuth, then the push itself.
    hold = 3 * (settings.daraja_connect_timeout + settings.daraja_read_timeout) + 10
    # Two requests with one key at once: the second waits for the first's intent rather than pushing again.
    with daraja.redis.lock(IDEMPOTENCY_LOCK.format(merchant_id, body["idempotency_key"]), timeout=hold,
                           blocking_timeout=hold):
        return _stk_push_once(store, daraja, merchant_id, body)


def _stk_push_once(store: Store, daraja: DarajaClient, merchant_id: str,
                   body: dict[str, Any]) -> tuple[PaymentIntent, bool]:
    with store.read() as session:
        existing = _by_idempotency_key(session, merchant_id, body["idempotency_key"])
        if existing is not None:
            return existing, False
        merchant = session.get(Merchant, merchant_id)
        creds = merchant_credentials(session, merchant_id)
    if not creds.passkey:
        raise InvalidPayload("passkey: the merchant's Daraja credentials need a passkey for STK Push",
                             {"passkey": ["is required for STK Push"]})
    callback_url = callback_urls(current_app.extensions["payhook.settings"].public_base_url, merchant)["stk"]
    accepted = daraja.stk_push(creds, body["amount"], body["phone"], callback_url, body["account_reference"],
                                 body["description"])
    log.info("stk push accepted for %s: checkout %s", mask_phone(body["phone"]), accepted.checkout_request_id)
    intent = PaymentIntent(
        id=ids.new_id("pin"), merchant_id=merchant_id, checkout_request_id=accepted.checkout_request_id,
        merchant_request_id=accepted.merchant_request_id, amount_minor=money.to_minor(body["amount"], "KES"),
        currency="KES", phone=mask_phone(body["phone"]), account_reference=body["account_reference"],
        description=body["description"], state=IntentState.PENDING.value, source=API,
        idempotency_key=body["idempotency_key"], checks=0, **_first_check())
    stored = _insert_intent(store, intent)
    return stored, stored.id == intent.id


def register_intent(store: Store, merchant_id: str, body: dict[str, Any]) -> tuple[PaymentIntent, bool]:
    """Record a payment intent for an STK Push the merchant made itself (validated ``IntentRegisterSchema``).

    Registering the same CheckoutRequestID (or idempotency key) again returns the first; the boolean
    says whether this call created it.
    """
    amount = body.get("amount")
    intent = PaymentIntent(
        id=ids.new_id("pin"), merchant_id=merchant_id, checkout_request_id=body["checkout_request_id"],
        merchant_request_id=body.get("merchant_request_id"),
        amount_minor=money.to_minor(amount, "KES") if amount is not None else None, currency="KES",
        phone=mask_phone(body["phone"]) if body.get("phone") else None,
        account_reference=body.get("account_reference"), description=body.get("description"),
        state=IntentState.PENDING.value, source=REGISTERED, idempotency_key=body.get("idempotency_key"), checks=0,
        **_first_check())
    stored = _insert_intent(store, intent)
    return stored, stored.id == intent.id


def visible_intent(session: Session, intent_id: str) -> PaymentIntent:
    """The intent, if the current principal may see it.

    Raises:
      NotFound: for an unknown intent or another merchant's alike.
    """
    intent = session.get(PaymentIntent, intent_id)
    if intent is None or not auth.may_see(intent.merchant_id):
        raise NotFound(f"no payment intent {intent_id}")
    return intent


def intents_query(filters: dict[str, Any]):
    """The SELECT of payment intents matching ``filters`` (merchant_id, state, source, checkout_request_id, since, until)."""
    stmt = select(PaymentIntent)
    for name in ("merchant_id", "state", "source", "checkout_request_id", "account_reference"):
        if filters.get(name):
            stmt = stmt.where(getattr(PaymentIntent, name) == filters[name])
    if filters.get("since"):
        stmt = stmt.where(PaymentIntent.created_at >= filters["since"])
    if filters.get("until"):
        stmt = stmt.where(PaymentIntent.created_at < filters["until"])
    return stmt

