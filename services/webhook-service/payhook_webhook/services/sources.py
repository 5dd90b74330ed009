"""Inbound gateway sources: adding and changing them, their secrets and their callback URLs.

A source is where one provider (Stripe, Paystack, Flutterwave, a Standard Webhooks or HMAC sender) posts a
merchant's events, at ``/in/<source id>/<token>``, signed with the source's secret.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import secrets as random
from typing import Any

from sqlalchemy.orm import Session

from payhook_shared import ids, signing
from payhook_shared.callbacks.gateways import FLUTTERWAVE, HMAC, STANDARD_WEBHOOKS
from payhook_shared.store import Merchant, Source
from payhook_shared.store.models import utcnow

from .. import auth
from ..errors import InvalidPayload, NotFound

# Providers whose secret the merchant chooses (and may let Payhook generate).
GENERATED_SECRET = frozenset({FLUTTERWAVE, HMAC, STANDARD_WEBHOOKS})
# Providers that publish their webhook addresses; others need the source's own allowed_ips.
PUBLISHED_IPS = frozenset({"stripe", "paystack"})


def callback_url(base_url: str, source: Source) -> str:
    """The URL the merchant pastes into the provider's dashboard."""
    return f"{base_url.rstrip('/')}/in/{source.id}/{source.callback_token}"


def _refuse(field: str, message: str) -> InvalidPayload:
    return InvalidPayload(f"{field}: {message}", {field: [message]})


def new_secret(provider: str, given: str | None) -> str:
    """The secret to store: the one given (checked where its form matters), or a generated one."""
    if given is None:
        if provider not in GENERATED_SECRET:
            raise _refuse("secret", f"is required for provider {provider}: paste the one its dashboard shows")
        return signing.generate_secret() if provider == STANDARD_WEBHOOKS else random.token_hex(32)
    if provider == STANDARD_WEBHOOKS:
        key = given.removeprefix(signing.SECRET_PREFIX)
        try:
            valid = given.startswith(signing.SECRET_PREFIX) and len(base64.b64decode(key + "=" * (-len(key) % 4),
                                                                                    validate=True)) >= 16
        except (ValueError, binascii.Error):
            valid = False
        if not valid:
            raise _refuse("secret", "must be a Standard Webhooks secret: whsec_ and base64 of at least 16 bytes")
    return given


def check_allowlist(source: Source) -> None:
    """Refuse an IP allowlist turned on with no addresses for a provider that publishes none."""
    if source.ip_allowlist_enabled and source.provider not in PUBLISHED_IPS \
            and not (source.config or {}).get("allowed_ips"):
        raise _refuse("allowed_ips", f"is required to turn the IP allowlist on: {source.provider} publishes none")


def visible_source(session: Session, source_id: str, for_update: bool = False) -> Source:
    """The source, if the current principal may see it.

    Raises:
      NotFound: for an unknown source or another merchant's alike.
    """
    source = session.get(Source, source_id, with_for_update=for_update)
    if source is None or not auth.may_see(source.merchant_id):
        raise NotFound(f"no source {source_id}")
    return source


def add_source(session: Session, merchant: Merchant, body: dict[str, Any], secret: str) -> Source:
    """Add a source with the validated ``body`` (``SourceCreateSchema``) and its ``secret`` (``new_secret``).

    Raises:
      InvalidPayload: naming ``allowed_ips`` when the allowlist is on with no addresses the provider lacks.
    """
    config = {k: body[k] for k in ("hmac", "allowed_ips") if body[k]}
    source = Source(id=ids.new_id("src"), merchant_id=merchant.id, provider=body["provider"],
                    description=body["description"], callback_token=ids.new_token(), secret=secret,
                    config=config, ip_allowlist_enabled=body["ip_allowlist_enabled"], enabled=body["enabled"])
    check_allowlist(source)
    session.add(source)
    session.flush()
    return source


def edit_source(session: Session, source: Source, changes: dict[str, Any]) -> None:
    """Apply validated ``changes`` (``SourceUpdateSchema``) to ``source``.

    Raises:
      InvalidPayload: naming ``hmac`` for a provider other than ``hmac``, or ``allowed_ips`` as ``add_source``.
    """
    if "hmac" in changes and source.provider != HMAC:
        raise _refuse("hmac", "is only for provider hmac")
    config = dict(source.config or {})
    for key in ("hmac", "allowed_ips"):
        if key in changes:
            config[key] = changes[key]
    # A JSON column is not change-tracked in place: assign a new dict.
    source.config = {k: v for k, v in config.items() if v}
    for field in ("description", "ip_allowlist_enabled", "enabled"):
        if field in changes:
            setattr(source, field, changes[field])
    check_allowlist(source)
    session.flush()


def replace_source_secret(session: Session, source: Source, secret: str, grace_seconds: int) -> None:
    """Give ``source`` the new ``secret``; the old one still verifies for ``grace_seconds`` more."""
    if grace_seconds > 0:
        source.previous_secret = source.secret
        source.previous_secret_expires_at = utcnow() + dt.timedelta(seconds=grace_seconds)
    else:
        source.previous_secret = None
        source.previous_secret_expires_at = None
    source.secret = secret
    session.flush()
