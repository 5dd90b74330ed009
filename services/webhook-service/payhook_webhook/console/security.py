"""Console sessions, CSRF tokens, security headers and the sign-in rate limit.

Sign-in exchanges an API key (checked by ``auth.authenticate``, stored only as
its hash) or an emailed link (``links``) for a session kept in the store: a
``console_sessions`` row naming the key, or the link and its address, and the
account. The signed cookie carries a random session token, whose SHA-256 is
all the row keeps, and the CSRF token. Every request needs that row, so
sign-out (which deletes it) ends the session on the server: a copied cookie is
dead afterwards. Every request also re-reads the key, or re-checks that the
address may still sign in to that account, so revoking the key or disabling
its merchant ends the session at once; revoking a key also deletes every
session it opened (``auth.revoke_api_key``). Every state-changing request must
carry the session's CSRF token in its form; comparing it in constant time
refuses forged posts.
"""

from __future__ import annotations

import datetime as dt
import hmac
import logging
import secrets

import redis
from flask import Flask, current_app, g, request, session
from flask.sessions import SecureCookieSessionInterface
from sqlalchemy import delete, select, update

from payhook_shared import ids
from payhook_shared.sign_in import hash_token, new_token
from payhook_shared.store import ApiKey, ConsoleSession, Merchant, SignInLink
from payhook_shared.store.models import utcnow

from ..auth import Principal
from ..errors import Forbidden, WebhookServiceError
from . import links

log = logging.getLogger(__name__)

CSRF_FIELD = "csrf_token"
SESSION_FIELD = "session_token"
# How stale a session's last_seen_at may get before a request refreshes it: no write per page.
LAST_SEEN_EVERY = dt.timedelta(minutes=1)
# Scripts, styles and images only from our own static files: an injected <script> cannot run.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)


class TooManyAttempts(WebhookServiceError):
    """Too many sign-in attempts from one address."""

    status = 429
    code = "too_many_attempts"


class LoginUnavailable(WebhookServiceError):
    """The sign-in rate limit cannot be checked, so sign-in is refused rather than left unlimited."""

    status = 503
    code = "login_unavailable"


class _CookieSessions(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions, opened without building a signer when there is no cookie.

    Flask opens a session for every request; callbacks and API calls never carry the
    console's cookie, and building the signer cost them more than the rest of opening.
    """

    def open_session(self, app: Flask, request):
        """An empty session when the request has no session cookie, else Flask's own."""
        if not request.cookies.get(self.get_cookie_name(app)):
            return self.session_class()
        return super().open_session(app, request)


def init_app(app: Flask) -> None:
    """Configure the session cookie from the settings; a missing secret key gets a random one."""
    settings = app.extensions["payhook.settings"]
    app.session_interface = _CookieSessions()
    app.secret_key = settings.console_secret_key or secrets.token_hex(32)
    if not settings.console_secret_key:
        log.warning("CONSOLE_SECRET_KEY is not set: console sessions last only as long as this process")
    app.config.update(
        SESSION_COOKIE_NAME="payhook_console",
        SESSION_COOKIE_PATH="/console",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.console_cookie_secure,
        PERMANENT_SESSION_LIFETIME=dt.timedelta(hours=settings.console_session_hours),
    )


def csrf_token() -> str:
    """This session's CSRF token, created on first use."""
    if CSRF_FIELD not in session:
        session[CSRF_FIELD] = secrets.token_urlsafe(32)
    return session[CSRF_FIELD]


def check_csrf() -> None:
    """Refuse a state-changing request whose form lacks this session's CSRF token.

    Raises:
      Forbidden: when the token is missing or wrong.
    """
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return
    expected = session.get(CSRF_FIELD)
    given = request.form.get(CSRF_FIELD, "")
    if not expected or not hmac.compare_digest(expected.encode(), given.encode()):
        raise Forbidden("the form's security token is missing or out of date; reload the page and try again")


def _fresh_session() -> None:
    """A new session and CSRF token, so nothing survives from before sign-in."""
    session.clear()
    session.permanent = True
    session[CSRF_FIELD] = secrets.token_urlsafe(32)


def _open(principal: Principal, api_key_id: str | None = None, link: SignInLink | None = None) -> None:
    """A fresh cookie session backed by a new ``console_sessions`` row for ``principal``."""
    _fresh_session()
    token = new_token()
    now = utcnow()
    settings = current_app.extensions["payhook.settings"]
    with current_app.extensions["payhook.store"].write() as db:
        # Sessions that ran out are of no use to anyone: each sign-in clears them away.
        db.execute(delete(ConsoleSession).where(ConsoleSession.expires_at <= now))
        db.add(ConsoleSession(
            id=ids.new_id("ses"), token_hash=hash_token(token), api_key_id=api_key_id,
            sign_in_link_id=link.id if link else None, email=link.email if link else None,
            merchant_id=principal.merchant_id, address=client_address(), created_at=now, last_seen_at=now,
            expires_at=now + dt.timedelta(hours=settings.console_session_hours)))
    session[SESSION_FIELD] = token


def sign_in(principal: Principal) -> None:
    """Start a fresh session for ``principal``, who signed in with an API key."""
    _open(principal, api_key_id=principal.key_id)


def sign_in_by_link(link: SignInLink) -> Principal:
    """Start a fresh session for whoever opened ``link``; returns them."""
    principal = Principal(key_id=link.id, merchant_id=link.merchant_id, email=link.email)
    _open(principal, link=link)
    return principal


def sign_out() -> None:
    """End the session, on the server too: its row is deleted, so a copy of the cookie opens nothing."""
    token = session.get(SESSION_FIELD)
    if token:
        with current_app.extensions["payhook.store"].write() as db:
            db.execute(delete(ConsoleSession).where(ConsoleSession.token_hash == hash_token(token)))
    session.clear()


def _may_continue(db, row) -> bool:
    """Whether the key or the address that opened the session may still sign in to its account."""
    if row.api_key_id is not None:
        return row.revoked_at is None and (row.merchant_id is None or bool(row.enabled))
    settings = current_app.extensions["payhook.settings"]
    return bool(row.email) and links.allowed(db, settings, row.email, row.merchant_id)


def load_principal() -> Principal | None:
    """The signed-in principal, re-checked against the store; None when there is none or it may no longer sign in."""
    token = session.get(SESSION_FIELD)
    if not token:
        return None
    now = utcnow()
    store = current_app.extensions["payhook.store"]
    with store.read() as db:
        row = db.execute(
            select(ConsoleSession.id, ConsoleSession.api_key_id, ConsoleSession.sign_in_link_id,
                   ConsoleSession.email, ConsoleSession.merchant_id, ConsoleSession.last_seen_at,
                   ConsoleSession.expires_at, ApiKey.revoked_at, Merchant.enabled)
            .outerjoin(ApiKey, ApiKey.id == ConsoleSession.api_key_id)
            .outerjoin(Merchant, Merchant.id == ConsoleSession.merchant_id)
            .where(ConsoleSession.token_hash == hash_token(token))
        ).one_or_none()
        alive = row is not None and row.expires_at > now and _may_continue(db, row)
    if not alive:
        session.clear()
        return None
    if now - row.last_seen_at >= LAST_SEEN_EVERY:
        with store.write() as db:
            db.execute(update(ConsoleSession).where(ConsoleSession.id == row.id).values(last_seen_at=now))
    return Principal(key_id=row.api_key_id or row.sign_in_link_id, merchant_id=row.merchant_id, email=row.email)


def client_address() -> str:
    """The caller's address, believing ``X-Forwarded-For`` only from trusted proxies."""
    policy = current_app.extensions["payhook.source_policy"]
    return policy.client_address(request.remote_addr, request.headers.getlist("X-Forwarded-For"))[:64]


def count_login_attempt() -> None:
    """Count a sign-in attempt from this address in Redis.

    Raises:
      TooManyAttempts: past ``console_login_attempts`` within ``console_login_window`` seconds.
      LoginUnavailable: when Redis cannot be reached.
    """
    settings = current_app.extensions["payhook.settings"]
    key = f"payhook:console:login:{client_address()}"
    client = current_app.extensions["payhook.broker"].client
    try:
        pipe = client.pipeline()
        pipe.incr(key)
        pipe.expire(key, settings.console_login_window, nx=True)
        count = pipe.execute()[0]
    except redis.RedisError as exc:
        log.error("console sign-in refused: Redis unavailable (%s)", type(exc).__name__)
        raise LoginUnavailable("sign-in is unavailable right now; try again shortly") from None
    if count > settings.console_login_attempts:
        raise TooManyAttempts(f"too many sign-in attempts; wait {settings.console_login_window // 60 or 1} "
                              "minutes and try again")


def security_headers(response):
    """``after_request``: a strict Content-Security-Policy and friends on every console answer."""
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "same-origin"
    if request.endpoint != "console.static":
        response.headers["Cache-Control"] = "no-store"
    return response


def current() -> Principal:
    """The principal of this console request (set by the blueprint's ``before_request``)."""
    return g.console_principal
