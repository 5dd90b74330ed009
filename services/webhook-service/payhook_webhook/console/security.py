"""Console sessions, CSRF tokens, security headers and the sign-in rate limit.

Sign-in exchanges an API key (checked by ``auth.authenticate``, stored only as
its hash) for a signed session cookie that holds the key's id, never the key.
Every request re-reads that key, so revoking it or disabling its merchant ends
the session at once. A session opened by an emailed link (``links``) holds the
link's id, address and account instead; every request re-checks that the
address may still sign in to that account. Every state-changing request must carry the session's
CSRF token in its form; comparing it in constant time refuses forged posts.
"""

from __future__ import annotations

import datetime as dt
import hmac
import logging
import secrets

import redis
from flask import Flask, current_app, g, request, session
from flask.sessions import SecureCookieSessionInterface
from sqlalchemy import select

from payhook_shared.store import ApiKey, Merchant, SignInLink

from ..auth import Principal
from ..errors import Forbidden, WebhookServiceError
from . import links

log = logging.getLogger(__name__)

CSRF_FIELD = "csrf_token"
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


def sign_in(principal: Principal) -> None:
    """Start a fresh session for ``principal``, who signed in with an API key."""
    _fresh_session()
    session["key_id"] = principal.key_id


def sign_in_by_link(link: SignInLink) -> Principal:
    """Start a fresh session for whoever opened ``link``; returns them."""
    _fresh_session()
    session["link_id"] = link.id
    session["email"] = link.email
    session["merchant_id"] = link.merchant_id
    return Principal(key_id=link.id, merchant_id=link.merchant_id, email=link.email)


def sign_out() -> None:
    """End the session."""
    session.clear()


def _link_principal() -> Principal | None:
    email, merchant_id = session.get("email"), session.get("merchant_id")
    with current_app.extensions["payhook.store"].read() as db:
        if not (email and links.allowed(db, current_app.extensions["payhook.settings"], email, merchant_id)):
            session.clear()
            return None
    return Principal(key_id=session["link_id"], merchant_id=merchant_id, email=email)


def load_principal() -> Principal | None:
    """The signed-in principal, re-checked against the store; None when there is none or it may no longer sign in."""
    if session.get("link_id"):
        return _link_principal()
    key_id = session.get("key_id")
    if not key_id:
        return None
    with current_app.extensions["payhook.store"].read() as db:
        row = db.execute(
            select(ApiKey.id, ApiKey.merchant_id, ApiKey.revoked_at, Merchant.enabled)
            .outerjoin(Merchant, Merchant.id == ApiKey.merchant_id).where(ApiKey.id == key_id)
        ).one_or_none()
    if row is None or row.revoked_at is not None or (row.merchant_id is not None and not row.enabled):
        session.clear()
        return None
    return Principal(key_id=row.id, merchant_id=row.merchant_id)


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
