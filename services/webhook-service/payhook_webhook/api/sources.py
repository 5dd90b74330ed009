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

from typing import Any

from flask import Blueprint, current_app, jsonify
from sqlalchemy import select

from payhook_shared.store import Source

from .. import auth
from ..schemas import SourceCreateSchema, SourceRotateSchema, SourceUpdateSchema, json_body, load
from ..services.common import iso
from ..services.merchants import visible_merchant
from ..services.sources import (
    add_source, callback_url, edit_source, new_secret, replace_source_secret, visible_source,
)
from .paging import requested_page

bp = Blueprint("sources", __name__, url_prefix="/v1")
bp.before_request(auth.require_api_key)


def _store():
    return current_app.extensions["payhook.store"]


def source_json(source: Source) -> dict[str, Any]:
    """A source as the API shows it; its secrets never."""
    config = source.config or {}
    return {
        "id": source.id,
        "merchant_id": source.merchant_id,
        "provider": source.provider,
        "description": source.description,
        "callback_url": callback_url(current_app.extensions["payhook.settings"].public_base_url, source),
        "hmac": config.get("hmac"),
        "ip_allowlist_enabled": source.ip_allowlist_enabled,
        "allowed_ips": config.get("allowed_ips"),
        "enabled": source.enabled,
        "previous_secret_expires_at": iso(source.previous_secret_expires_at),
        "created_at": iso(source.created_at),
        "updated_at": iso(source.updated_at),
    }


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
    secret = new_secret(body["provider"], body["secret"])
    with _store().write() as session:
        source = add_source(session, visible_merchant(session, merchant_id), body, secret)
        return jsonify(_shown_once(source, secret, body["secret"] is None)), 201


@bp.get("/merchants/<merchant_id>/sources")
def list_sources(merchant_id: str):
    """A merchant's inbound sources."""
    with _store().read() as session:
        merchant = visible_merchant(session, merchant_id)
        stmt = select(Source).where(Source.merchant_id == merchant.id)
        return jsonify(requested_page(session, stmt, Source.id, source_json))


@bp.get("/sources/<source_id>")
def get_source(source_id: str):
    """One source (never its secret)."""
    with _store().read() as session:
        return jsonify(source_json(visible_source(session, source_id)))


@bp.patch("/sources/<source_id>")
def update_source(source_id: str):
    """Change a source's description, HMAC scheme or IP allowlist, or enable/disable it."""
    _, payload = json_body()
    body = load(SourceUpdateSchema(), payload)
    with _store().write() as session:
        source = visible_source(session, source_id, for_update=True)
        edit_source(session, source, body)
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
        source = visible_source(session, source_id, for_update=True)
        secret = new_secret(source.provider, body["secret"])
        replace_source_secret(session, source, secret, grace)
        return jsonify(_shown_once(source, secret, body["secret"] is None))
