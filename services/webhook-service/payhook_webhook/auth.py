"""API keys: creation, hashing and the ``Authorization: Bearer`` check.

A key is ``phk_`` + 64 lower-case hex digits (hex, like every Payhook id, so
no key can spell a word a provider or log filter objects to). Only its
SHA-256 is stored, so a leaked database gives no usable key; the key itself
is shown once, when it is created. A key with no merchant is an admin key.

Every presented key is hashed and looked up the same way whether it is
well-formed or not, and the stored hash is compared in constant time, so the
answer's timing does not tell a caller how close a guess was.

Keys are listed with their last four characters and when they were created and
last used, never the key. A revoked key is refused by the very next call, and
revoking it deletes every console session it opened.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import hmac
import re
import secrets

from flask import current_app, g, request
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from payhook_shared import ids
from payhook_shared.store import ApiKey, ConsoleSession, Merchant, Store
from payhook_shared.store.models import utcnow

from .errors import Forbidden, NotFound, Unauthorized

KEY_PREFIX = "phk_"
_KEY_SHAPE = re.compile(r"^phk_[0-9a-f]{64}$")
# Hashed instead of an unknown key, so a malformed key costs the same lookup as a real one.
_NO_KEY_HASH = "0" * 64
# How stale a key's last_used_at may get before a call refreshes it: no write per request.
LAST_USED_EVERY = dt.timedelta(minutes=1)
HINT_LENGTH = 4


@dataclasses.dataclass(frozen=True)
class Principal:
    """Who is calling: an admin (``merchant_id`` is None) or one merchant.

    ``key_id`` names the credential: an API key, or for a console session
    opened by an emailed link, that link (``email`` is then its address).
    """

    key_id: str
    merchant_id: str | None
    email: str | None = None

    @property
    def is_admin(self) -> bool:
        """Whether this key may act on every merchant."""
        return self.merchant_id is None


def generate_key() -> str:
    """A new API key: ``phk_`` + 256 random bits in hex."""
    return KEY_PREFIX + secrets.token_hex(32)


def hash_key(key: str) -> str:
    """The SHA-256 hex digest stored in place of ``key``."""
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def create_api_key(store: Store, merchant_id: str | None = None, label: str = "") -> tuple[ApiKey, str]:
    """Store a new key's hash; return the row and the key, which is never retrievable again.

    Raises:
      LookupError: if ``merchant_id`` names no merchant.
    """
    key = generate_key()
    with store.write() as session:
        if merchant_id is not None and session.get(Merchant, merchant_id) is None:
            raise LookupError(f"no merchant {merchant_id}")
        row = ApiKey(id=ids.new_id("key"), merchant_id=merchant_id, key_hash=hash_key(key), label=label,
                     hint=key[-HINT_LENGTH:])
        session.add(row)
    return row, key


def _bearer_token(header: str | None) -> str:
    if not header:
        raise Unauthorized("missing Authorization header; send 'Authorization: Bearer <api key>'")
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("Authorization header must be 'Bearer <api key>'")
    return token.strip()


def authenticate(store: Store, header: str | None) -> Principal:
    """The principal an ``Authorization`` header value proves.

    Raises:
      Unauthorized: when the header is missing or malformed, or the key is unknown or revoked.
      Forbidden: when the key belongs to a disabled merchant.
    """
    token = _bearer_token(header)
    well_formed = bool(_KEY_SHAPE.match(token))
    digest = hash_key(token)
    presented = digest if well_formed else _NO_KEY_HASH
    with store.read() as session:
        row = session.execute(
            select(ApiKey.id, ApiKey.key_hash, ApiKey.merchant_id, ApiKey.revoked_at, ApiKey.last_used_at,
                   Merchant.enabled)
            .outerjoin(Merchant, Merchant.id == ApiKey.merchant_id)
            .where(ApiKey.key_hash == presented)
        ).one_or_none()
    stored = row.key_hash if row is not None else _NO_KEY_HASH
    if not (hmac.compare_digest(presented, stored) and well_formed and row is not None):
        raise Unauthorized("invalid API key")
    if row.revoked_at is not None:
        raise Unauthorized("API key revoked")
    if row.merchant_id is not None and not row.enabled:
        raise Forbidden("merchant disabled")
    now = utcnow()
    if row.last_used_at is None or now - row.last_used_at >= LAST_USED_EVERY:
        with store.write() as session:
            session.execute(update(ApiKey).where(ApiKey.id == row.id).values(last_used_at=now))
    return Principal(key_id=row.id, merchant_id=row.merchant_id)


def list_api_keys(session: Session, merchant_id: str | None = None) -> list[ApiKey]:
    """Every API key (or ``merchant_id``'s), oldest first; the rows hold hashes, never keys."""
    stmt = select(ApiKey).order_by(ApiKey.id)
    if merchant_id is not None:
        stmt = stmt.where(ApiKey.merchant_id == merchant_id)
    return list(session.scalars(stmt))


def revoke_api_key(session: Session, key_id: str, now: dt.datetime | None = None) -> tuple[ApiKey, bool]:
    """Revoke the key ``key_id`` and delete every console session it opened, in ``session``'s transaction.

    Returns the row and whether this call revoked it (False: it was revoked already).

    Raises:
      LookupError: if no key has that id.
    """
    row = session.get(ApiKey, key_id, with_for_update=True)
    if row is None:
        raise LookupError(f"no API key {key_id}")
    newly = row.revoked_at is None
    if newly:
        row.revoked_at = now or utcnow()
    session.execute(delete(ConsoleSession).where(ConsoleSession.api_key_id == key_id))
    return row, newly


def require_api_key() -> None:
    """``before_request`` hook: authenticate the caller into ``g.principal``."""
    g.principal = authenticate(current_app.extensions["payhook.store"], request.headers.get("Authorization"))


def current_principal() -> Principal:
    """The caller authenticated by ``require_api_key`` for this request."""
    return g.principal


def require_admin() -> Principal:
    """The caller, who must hold an admin key.

    Raises:
      Forbidden: for a merchant key.
    """
    principal = current_principal()
    if not principal.is_admin:
        raise Forbidden("this operation needs an admin API key")
    return principal


def may_see(merchant_id: str) -> bool:
    """Whether the caller may see a row belonging to ``merchant_id``.

    A row it may not see must answer exactly as an unknown id does: the
    caller's own id in the message, never the owning merchant's.
    """
    principal = current_principal()
    return principal.is_admin or principal.merchant_id == merchant_id


def check_merchant_access(merchant_id: str) -> None:
    """Refuse a merchant key access to any merchant but its own.

    Raises:
      NotFound: the same answer an unknown merchant gets, so keys cannot probe for ids.
    """
    if not may_see(merchant_id):
        raise NotFound(f"no merchant {merchant_id}")
