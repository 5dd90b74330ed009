"""Console sign-in link tokens, minted by the mail-worker as it sends the email.

The webhook-service records each link (``SignInLink``) with no token and queues
an email whose context names the links: ``{"id", "label", "url"}``, where
``url`` is the address the token is appended to. Only when the mail-worker is
about to hand the email to SMTP does ``mint`` make each token and store its
SHA-256 (committed before the email goes), so the token exists in that email
and nowhere else: no row, Redis message or log holds it.

Each send mints afresh, so a retried email carries new tokens and any earlier
attempt's token stops working; a link already used or expired gets no token
and is left out of the email.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session

from .store import SignInLink
from .store.models import utcnow


def hash_token(token: str) -> str:
    """The SHA-256 hex digest stored in place of ``token``."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def new_token() -> str:
    """A sign-in token: 256 random bits, URL-safe."""
    return secrets.token_urlsafe(32)


def mint(session: Session, context: dict[str, Any], now: dt.datetime | None = None) -> dict[str, Any]:
    """``context`` to render, each link's ``url`` ending in a fresh token whose hash its row now holds.

    Runs in the caller's transaction, which must commit before the email is sent.
    """
    now = now or utcnow()
    minted = []
    for link in context.get("links") or []:
        if "id" not in link:
            continue
        token = new_token()
        changed = session.execute(
            update(SignInLink)
            .where(SignInLink.id == link["id"], SignInLink.used_at.is_(None), SignInLink.expires_at > now)
            .values(token_hash=hash_token(token)).execution_options(synchronize_session=False)
        ).rowcount
        if changed:
            minted.append({"label": link["label"], "url": f"{link['url']}{token}"})
    return {**context, "links": minted}
