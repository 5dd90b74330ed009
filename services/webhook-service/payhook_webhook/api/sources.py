"""Inbound gateway sources: ``/v1/merchants/<id>/sources`` and ``/v1/sources/<id>``.

A source is where one provider (Stripe, Paystack, Flutterwave, a Standard
Webhooks or HMAC sender) posts a merchant's events: its callback URL
``/in/<source id>/<token>`` and the secret its signatures are checked with.
The provider issues the secret for Stripe (``whsec_…``), Paystack (the secret
key) and Standard Webhooks senders; for Flutterwave and ``hmac`` sources the
merchant may supply one or let Payhook generate it, shown once. Secrets are
never shown again. Same access rules as endpoints: a merchant key sees only
its own sources.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import secrets as random
from typing import Any

from flask import Blueprint, current_app, jsonify
from sqlalchemy import select
from sqlalchemy.orm import Session

from payhook_shared import ids, signing
from payhook_shared.callbacks.gateways import FLUTTERWAVE, HMAC, STANDARD_WEBHOOKS
from payhook_shared.store import Source
from payhook_shared.store.models import utcnow

from .. import auth
from ..errors import InvalidPayload, NotFound
from .management import _iso, _merchant, _page, _store
from .schemas import SourceCreateSchema, SourceRotateSchema, SourceUpdateSchema, json_body, load

bp = Blueprint("sources", __name__, url_prefix="/v1")
bp.before_request(auth.require_api_key)

# Providers whose secret the merchant chooses (and may let Payhook generate).
GENERATED_SECRET = frozenset({FLUTTERWAVE, HMAC, STANDARD_WEBHOOKS})
# Providers that publish their webhook addresses; others need the source's own allowed_ips.
PUBLISHED_IPS = frozenset({"stripe", "paystack"})


def callback_url(source: Source) -> str:
    """The URL the merchant pastes into the provider's dashboard."""
    base = current_app.extensions["payhook.settings"].public_base_url.rstrip("/")
    return f"{base}/in/{source.id}/{source.callback_token}"


def source_json(source: Source) -> dict[str, Any]:
    """A source as the API shows it; its secrets never."""
    config = source.config or {}
    return {
        "id": source.id,
        "merchant_id": source.merchant_id,
        "provider": source.provider,
        "description": source.description,
        "callback_url": callback_url(source),
        "hmac": config.get("hmac"),
        "ip_allowlist_enabled": source.ip_allowlist_enabled,
        "allowed_ips": config.get("allowed_ips"),
        "enabled": source.enabled,
        "previous_secret_expires_at": _iso(source.previous_secret_expires_at),
        "created_at": _iso(source.created_at),
        "updated_at": _iso(source.updated_at),
    }


def _refuse(field: str, message: str) -> InvalidPayload:
    return InvalidPayload(f"{field}: {message}", {field: [message]})


def _new_secret(provider: str, given: str | None) -> str:
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


def _check_allowlist(source: Source) -> None:
    if source.ip_allowlist_enabled and source.provider not in PUBLISHED_IPS \
            and not (source.config or {}).get("allowed_ips"):
        raise _refuse("allowed_ips", f"is required to turn the IP allowlist on: {source.provider} publishes none")


def _source(session: Session, source_id: str, for_update: bool = False) -> Source:
    source = session.get(Source, source_id, with_for_update=for_update)
    if source is None or not auth.may_see(source.merchant_id):
        raise NotFound(f"no source {source_id}")
    return source


def _shown_once(source: Source, secret: str, generated: bool) -> dict[str, Any]:
    out = source_json(source)
    if generated:
        out["secret"] = secret
    return out


@bp.post("/merchants/<merchant_id>/sources")
def create_source(merchant_id: str):
    """Add an inbound source; a generated secret is in this answer only."""
    _, payload = json_body()
    body = load(SourceCreateSchema(), payload)
    secret = _new_secret(body["provider"], body["secret"])
    config = {k: body[k] for k in ("hmac", "allowed_ips") if body[k]}
    with _store().write() as session:
        merchant = _merchant(session, merchant_id)
        source = Source(id=ids.new_id("src"), merchant_id=merchant.id, provider=body["provider"],
                        description=body["description"], callback_token=ids.new_token(), secret=secret,
                        config=config, ip_allowlist_enabled=body["ip_allowlist_enabled"], enabled=body["enabled"])
        _check_allowlist(source)
        session.add(source)
        session.flush()
        return jsonify(_shown_once(source, secret, body["secret"] is None)), 201


@bp.get("/merchants/<merchant_id>/sources")
def list_sources(merchant_id: str):
    """A merchant's inbound sources."""
    with _store().read() as session:
        merchant = _merchant(session, merchant_id)
        stmt = select(Source).where(Source.merchant_id == merchant.id)
        return jsonify(_page(session, stmt, Source.id, source_json))


@bp.get("/sources/<source_id>")
def get_source(source_id: str):
    """One source (never its secret)."""
    with _store().read() as session:
        return jsonify(source_json(_source(session, source_id)))


@bp.patch("/sources/<source_id>")
def update_source(source_id: str):
    """Change a source's description, HMAC scheme or IP allowlist, or enable/disable it."""
    _, payload = json_body()
    body = load(SourceUpdateSchema(), payload)
    with _store().write() as session:
        source = _source(session, source_id, for_update=True)
        if "hmac" in body and source.provider != HMAC:
            raise _refuse("hmac", "is only for provider hmac")
        config = dict(source.config or {})
        for key in ("hmac", "allowed_ips"):
            if key in body:
                config[key] = body[key]
        # A JSON column is not change-tracked in place: assign a new dict.
        source.config = {k: v for k, v in config.items() if v}
        for field in ("description", "ip_allowlist_enabled", "enabled"):
            if field in body:
                setattr(source, field, body[field])
        _check_allowlist(source)
        session.flush()
        return jsonify(source_json(source))


@bp.post("/sources/<source_id>/rotate-secret")
def rotate_source_secret(source_id: str):
    """Replace the source's secret; the old one still verifies for the grace period.

    Paste the provider's new secret as ``secret`` (Stripe, Paystack), or omit it
    for Flutterwave, Standard Webhooks and ``hmac`` sources to have one generated
    and shown once.
    """
    _, payload = json_body(optional=True)
    body = load(SourceRotateSchema(), payload)
    grace = body["grace_period_seconds"]
    with _store().write() as session:
        source = _source(session, source_id, for_update=True)
        secret = _new_secret(source.provider, body["secret"])
        if grace > 0:
            source.previous_secret = source.secret
            source.previous_secret_expires_at = utcnow() + dt.timedelta(seconds=grace)
        else:
            source.previous_secret = None
            source.previous_secret_expires_at = None
        source.secret = secret
        session.flush()
        return jsonify(_shown_once(source, secret, body["secret"] is None))
