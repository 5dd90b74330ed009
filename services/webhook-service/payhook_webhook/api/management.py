"""Merchant and endpoint management: ``/v1/merchants`` (with their settings) and ``/v1/endpoints``.

Admin keys see every merchant; a merchant key sees only its own, and any
other merchant or endpoint answers 404 exactly as an unknown one would.
Lists are keyset-paginated (``?limit=&after=<id>``): ids grow with time, so
``WHERE id > :after ORDER BY id`` is stable under inserts and never scans
skipped rows the way OFFSET does.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, jsonify
from sqlalchemy import select

from payhook_shared import merchant_settings
from payhook_shared.store import Endpoint, Merchant

from .. import auth
from ..schemas import (
    EndpointCreateSchema, EndpointUpdateSchema, MerchantCreateSchema, MerchantUpdateSchema, RotateSecretSchema,
    json_body, load,
)
from ..services.common import iso
from ..services.endpoints import add_endpoint, edit_endpoint, rotate_endpoint_secret, visible_endpoint
from ..services.merchants import callback_urls, change_merchant, change_settings, new_merchant, visible_merchant
from .paging import requested_page

bp = Blueprint("management", __name__, url_prefix="/v1")
bp.before_request(auth.require_api_key)


def merchant_json(merchant: Merchant) -> dict[str, Any]:
    """A merchant as the API shows it."""
    return {
        "id": merchant.id,
        "name": merchant.name,
        "notification_email": merchant.notification_email,
        "enabled": merchant.enabled,
        "priority_rules": merchant_settings.priority_rules(merchant.settings),
        "created_at": iso(merchant.created_at),
    }


def endpoint_json(endpoint: Endpoint) -> dict[str, Any]:
    """An endpoint as the API shows it; its secrets are never shown again after creation or rotation.

    Custom headers are shown as set, values too: they are the merchant's own
    credentials for its receiver, and whoever may read them here may replace them.
    """
    return {
        "id": endpoint.id,
        "merchant_id": endpoint.merchant_id,
        "url": endpoint.url,
        "description": endpoint.description,
        "event_types": endpoint.event_types,
        "enabled": endpoint.enabled,
        "rate_limit_per_second": endpoint.rate_limit_per_second,
        "max_in_flight": endpoint.max_in_flight,
        "custom_headers": endpoint.custom_headers,
        "previous_secret_expires_at": iso(endpoint.previous_secret_expires_at),
        "created_at": iso(endpoint.created_at),
        "updated_at": iso(endpoint.updated_at),
    }


def settings_json(merchant: Merchant) -> dict[str, Any]:
    """A merchant's settings as the services read them (sections it never set are empty)."""
    return {"merchant_id": merchant.id, **merchant_settings.view(merchant.settings)}


def _store():
    return current_app.extensions["payhook.store"]


@bp.post("/merchants")
def create_merchant():
    """Create a merchant (admin only)."""
    auth.require_admin()
    _, payload = json_body()
    body = load(MerchantCreateSchema(), payload)
    merchant = new_merchant(body["name"], body["notification_email"], body["priority_rules"])
    with _store().write() as session:
        session.add(merchant)
    settings = current_app.extensions["payhook.settings"]
    return jsonify({**merchant_json(merchant),
                    "callback_urls": callback_urls(settings.public_base_url, merchant)}), 201


@bp.get("/merchants")
def list_merchants():
    """Every merchant for an admin key; only its own for a merchant key."""
    principal = auth.current_principal()
    stmt = select(Merchant)
    if not principal.is_admin:
        stmt = stmt.where(Merchant.id == principal.merchant_id)
    with _store().read() as session:
        return jsonify(requested_page(session, stmt, Merchant.id, merchant_json))


@bp.get("/merchants/<merchant_id>")
def get_merchant(merchant_id: str):
    """One merchant."""
    with _store().read() as session:
        return jsonify(merchant_json(visible_merchant(session, merchant_id)))


@bp.patch("/merchants/<merchant_id>")
def update_merchant(merchant_id: str):
    """Change a merchant's name, email or priority rules; an admin may also disable or enable it."""
    _, payload = json_body()
    body = load(MerchantUpdateSchema(), payload)
    if "enabled" in body:
        auth.require_admin()
    with _store().write() as session:
        merchant = visible_merchant(session, merchant_id)
        change_merchant(session, auth.current_principal(), merchant,
                        {k: v for k, v in body.items() if k != "priority_rules"})
        if "priority_rules" in body:
            change_settings(session, auth.current_principal(), merchant, {"priority_rules": body["priority_rules"]})
        return jsonify(merchant_json(merchant))


@bp.get("/merchants/<merchant_id>/settings")
def get_settings(merchant_id: str):
    """The merchant's priority rules, retry profile, notification preferences, retention and C2B validation."""
    with _store().read() as session:
        return jsonify(settings_json(visible_merchant(session, merchant_id)))


@bp.patch("/merchants/<merchant_id>/settings")
def update_settings(merchant_id: str):
    """Replace the sections given (``null`` returns a section to the defaults); the rest stay."""
    _, payload = json_body()
    allow = current_app.extensions["payhook.settings"].endpoint_allowlist
    body = load(merchant_settings.SettingsSchema(allow=allow), payload)
    with _store().write() as session:
        merchant = visible_merchant(session, merchant_id)
        change_settings(session, auth.current_principal(), merchant, body)
        return jsonify(settings_json(merchant))


@bp.get("/merchants/<merchant_id>/callback-urls")
def get_callback_urls(merchant_id: str):
    """The URLs the merchant registers with the provider, by callback kind."""
    with _store().read() as session:
        merchant = visible_merchant(session, merchant_id)
    settings = current_app.extensions["payhook.settings"]
    return jsonify({"merchant_id": merchant.id,
                    "callback_urls": callback_urls(settings.public_base_url, merchant)})


@bp.post("/merchants/<merchant_id>/endpoints")
def create_endpoint(merchant_id: str):
    """Add a webhook endpoint; its signing secret is in this answer only."""
    _, payload = json_body()
    body = load(EndpointCreateSchema(), payload)
    with _store().write() as session:
        merchant = visible_merchant(session, merchant_id)
        endpoint = add_endpoint(session, auth.current_principal(), merchant, body)
        return jsonify({**endpoint_json(endpoint), "secret": endpoint.secret}), 201


@bp.get("/merchants/<merchant_id>/endpoints")
def list_endpoints(merchant_id: str):
    """A merchant's endpoints."""
    with _store().read() as session:
        merchant = visible_merchant(session, merchant_id)
        stmt = select(Endpoint).where(Endpoint.merchant_id == merchant.id)
        return jsonify(requested_page(session, stmt, Endpoint.id, endpoint_json))


@bp.get("/endpoints/<endpoint_id>")
def get_endpoint(endpoint_id: str):
    """One endpoint (without its secret)."""
    with _store().read() as session:
        return jsonify(endpoint_json(visible_endpoint(session, endpoint_id)))


@bp.patch("/endpoints/<endpoint_id>")
def update_endpoint(endpoint_id: str):
    """Change an endpoint's URL, description, event-type filter, limits or custom headers, or enable/disable it."""
    _, payload = json_body()
    body = load(EndpointUpdateSchema(), payload)
    with _store().write() as session:
        endpoint = visible_endpoint(session, endpoint_id)
        edit_endpoint(session, auth.current_principal(), endpoint, body)
        return jsonify(endpoint_json(endpoint))


@bp.post("/endpoints/<endpoint_id>/rotate-secret")
def rotate_secret(endpoint_id: str):
    """Give the endpoint a new secret, shown once; the old one keeps signing for the grace period.

    Rotating again inside a grace period retires the older previous secret at once:
    only the current and the one before it ever sign.
    """
    _, payload = json_body(optional=True)
    body = load(RotateSecretSchema(), payload)
    grace = body["grace_period_seconds"]
    with _store().write() as session:
        endpoint = visible_endpoint(session, endpoint_id, for_update=True)
        rotate_endpoint_secret(endpoint, grace)
        session.flush()
        return jsonify({**endpoint_json(endpoint), "secret": endpoint.secret})
