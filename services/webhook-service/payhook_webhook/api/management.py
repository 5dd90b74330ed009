"""Merchant and endpoint management: ``/v1/merchants`` (with their settings) and ``/v1/endpoints``.

Admin keys see every merchant; a merchant key sees only its own, and any
other merchant or endpoint answers 404 exactly as an unknown one would.
Lists are keyset-paginated (``?limit=&after=<id>``): ids grow with time, so
``WHERE id > :after ORDER BY id`` is stable under inserts and never scans
skipped rows the way OFFSET does.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import Blueprint, current_app, jsonify
from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from payhook_shared import endpoint_headers, ids, merchant_settings, signing
from payhook_shared.store import Endpoint, Merchant
from payhook_shared.store.models import utcnow

from .. import audit, auth
from ..cli import callback_urls
from ..errors import NotFound
from .schemas import (
    EndpointCreateSchema, EndpointUpdateSchema, MerchantCreateSchema, MerchantUpdateSchema, PageQuerySchema,
    RotateSecretSchema, json_body, load, query,
)

bp = Blueprint("management", __name__, url_prefix="/v1")
bp.before_request(auth.require_api_key)


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def merchant_json(merchant: Merchant) -> dict[str, Any]:
    """A merchant as the API shows it."""
    return {
        "id": merchant.id,
        "name": merchant.name,
        "notification_email": merchant.notification_email,
        "enabled": merchant.enabled,
        "priority_rules": merchant_settings.priority_rules(merchant.settings),
        "created_at": _iso(merchant.created_at),
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
        "previous_secret_expires_at": _iso(endpoint.previous_secret_expires_at),
        "created_at": _iso(endpoint.created_at),
        "updated_at": _iso(endpoint.updated_at),
    }


def _page(session: Session, stmt: Select, id_column: Any, render) -> dict[str, Any]:
    params = query(PageQuerySchema())
    limit = params["limit"]
    if params["after"] is not None:
        stmt = stmt.where(id_column > params["after"])
    rows = session.scalars(stmt.order_by(id_column).limit(limit + 1)).all()
    has_more = len(rows) > limit
    rows = rows[:limit]
    return {
        "data": [render(row) for row in rows],
        "has_more": has_more,
        "next_after": rows[-1].id if has_more else None,
    }


def _merchant(session: Session, merchant_id: str) -> Merchant:
    auth.check_merchant_access(merchant_id)
    merchant = session.get(Merchant, merchant_id)
    if merchant is None:
        raise NotFound(f"no merchant {merchant_id}")
    return merchant


def _endpoint(session: Session, endpoint_id: str, for_update: bool = False) -> Endpoint:
    endpoint = session.get(Endpoint, endpoint_id, with_for_update=for_update)
    if endpoint is None or not auth.may_see(endpoint.merchant_id):
        raise NotFound(f"no endpoint {endpoint_id}")
    return endpoint


def settings_json(merchant: Merchant) -> dict[str, Any]:
    """A merchant's settings as the services read them (sections it never set are empty)."""
    return {"merchant_id": merchant.id, **merchant_settings.view(merchant.settings)}


def change_settings(session: Session, principal: auth.Principal, merchant: Merchant,
                    changes: dict[str, Any]) -> None:
    """Apply validated ``changes`` (sections of the settings) to ``merchant``, audited as ``principal``'s.

    The API and the console both change settings through here.
    """
    if not changes:
        return
    merchant.settings = merchant_settings.merged(merchant.settings, changes)
    audit.record(session, principal, "update_settings", merchant.id, changes=changes)


def change_merchant(session: Session, principal: auth.Principal, merchant: Merchant,
                    changes: dict[str, Any]) -> None:
    """Apply validated ``changes`` (name, notification email, enabled) to ``merchant``, audited as ``principal``'s.

    The API and the console both change merchants through here; only fields that differ are recorded.
    Whether ``principal`` may change ``enabled`` is the caller's check.
    """
    changed = {name: value for name, value in changes.items() if getattr(merchant, name) != value}
    if not changed:
        return
    for name, value in changed.items():
        setattr(merchant, name, value)
    audit.record(session, principal, "update_merchant", merchant.id, changes=changed)


def _auditable(fields: dict[str, Any]) -> dict[str, Any]:
    # Custom header values are often credentials: the audit log keeps their names only.
    if "custom_headers" not in fields:
        return fields
    return {**fields, "custom_headers": endpoint_headers.redacted(fields["custom_headers"])}


def add_endpoint(session: Session, principal: auth.Principal, merchant: Merchant,
                 body: dict[str, Any]) -> Endpoint:
    """Add an endpoint with the validated ``body`` (``EndpointCreateSchema``), audited as ``principal``'s.

    The API and the console both add endpoints through here.
    """
    endpoint = Endpoint(id=ids.new_id("ep"), merchant_id=merchant.id, secret=signing.generate_secret(), **body)
    session.add(endpoint)
    session.flush()
    audit.record(session, principal, "create_endpoint", endpoint.id, **_auditable(body))
    return endpoint


def edit_endpoint(session: Session, principal: auth.Principal, endpoint: Endpoint,
                    changes: dict[str, Any]) -> None:
    """Apply validated ``changes`` (``EndpointUpdateSchema``) to ``endpoint``, audited as ``principal``'s.

    The API and the console both change endpoints through here; only fields that differ are recorded.
    """
    changed = {name: value for name, value in changes.items() if getattr(endpoint, name) != value}
    if not changed:
        return
    for name, value in changed.items():
        setattr(endpoint, name, value)
    session.flush()
    audit.record(session, principal, "update_endpoint", endpoint.id, changes=_auditable(changed))


def _store():
    return current_app.extensions["payhook.store"]


@bp.post("/merchants")
def create_merchant():
    """Create a merchant (admin only)."""
    auth.require_admin()
    _, payload = json_body()
    body = load(MerchantCreateSchema(), payload)
    rules = body["priority_rules"]
    merchant = Merchant(id=ids.new_id("mch"), name=body["name"], notification_email=body["notification_email"],
                        callback_token=ids.new_token(), settings={"priority_rules": rules} if rules else {},
                        enabled=True)
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
        return jsonify(_page(session, stmt, Merchant.id, merchant_json))


@bp.get("/merchants/<merchant_id>")
def get_merchant(merchant_id: str):
    """One merchant."""
    with _store().read() as session:
        return jsonify(merchant_json(_merchant(session, merchant_id)))


@bp.patch("/merchants/<merchant_id>")
def update_merchant(merchant_id: str):
    """Change a merchant's name, email or priority rules; an admin may also disable or enable it."""
    _, payload = json_body()
    body = load(MerchantUpdateSchema(), payload)
    if "enabled" in body:
        auth.require_admin()
    with _store().write() as session:
        merchant = _merchant(session, merchant_id)
        change_merchant(session, auth.current_principal(), merchant,
                        {k: v for k, v in body.items() if k != "priority_rules"})
        if "priority_rules" in body:
            change_settings(session, auth.current_principal(), merchant, {"priority_rules": body["priority_rules"]})
        return jsonify(merchant_json(merchant))


@bp.get("/merchants/<merchant_id>/settings")
def get_settings(merchant_id: str):
    """The merchant's priority rules, retry profile, notification preferences, retention and C2B validation."""
    with _store().read() as session:
        return jsonify(settings_json(_merchant(session, merchant_id)))


@bp.patch("/merchants/<merchant_id>/settings")
def update_settings(merchant_id: str):
    """Replace the sections given (``null`` returns a section to the defaults); the rest stay."""
    _, payload = json_body()
    allow = current_app.extensions["payhook.settings"].endpoint_allowlist
    body = load(merchant_settings.SettingsSchema(allow=allow), payload)
    with _store().write() as session:
        merchant = _merchant(session, merchant_id)
        change_settings(session, auth.current_principal(), merchant, body)
        return jsonify(settings_json(merchant))


@bp.get("/merchants/<merchant_id>/callback-urls")
def get_callback_urls(merchant_id: str):
    """The URLs the merchant registers with the provider, by callback kind."""
    with _store().read() as session:
        merchant = _merchant(session, merchant_id)
    settings = current_app.extensions["payhook.settings"]
    return jsonify({"merchant_id": merchant.id,
                    "callback_urls": callback_urls(settings.public_base_url, merchant)})


@bp.post("/merchants/<merchant_id>/endpoints")
def create_endpoint(merchant_id: str):
    """Add a webhook endpoint; its signing secret is in this answer only."""
    _, payload = json_body()
    body = load(EndpointCreateSchema(), payload)
    with _store().write() as session:
        merchant = _merchant(session, merchant_id)
        endpoint = add_endpoint(session, auth.current_principal(), merchant, body)
        return jsonify({**endpoint_json(endpoint), "secret": endpoint.secret}), 201


@bp.get("/merchants/<merchant_id>/endpoints")
def list_endpoints(merchant_id: str):
    """A merchant's endpoints."""
    with _store().read() as session:
        merchant = _merchant(session, merchant_id)
        stmt = select(Endpoint).where(Endpoint.merchant_id == merchant.id)
        return jsonify(_page(session, stmt, Endpoint.id, endpoint_json))


@bp.get("/endpoints/<endpoint_id>")
def get_endpoint(endpoint_id: str):
    """One endpoint (without its secret)."""
    with _store().read() as session:
        return jsonify(endpoint_json(_endpoint(session, endpoint_id)))


@bp.patch("/endpoints/<endpoint_id>")
def update_endpoint(endpoint_id: str):
    """Change an endpoint's URL, description, event-type filter, limits or custom headers, or enable/disable it."""
    _, payload = json_body()
    body = load(EndpointUpdateSchema(), payload)
    with _store().write() as session:
        endpoint = _endpoint(session, endpoint_id)
        edit_endpoint(session, auth.current_principal(), endpoint, body)
        return jsonify(endpoint_json(endpoint))


def rotate_endpoint_secret(endpoint: Endpoint, grace_seconds: int) -> str:
    """Give ``endpoint`` a new secret and return it; the old one signs for ``grace_seconds`` more.

    The API and the console both rotate through here.
    """
    if grace_seconds > 0:
        endpoint.previous_secret = endpoint.secret
        endpoint.previous_secret_expires_at = utcnow() + dt.timedelta(seconds=grace_seconds)
    else:
        endpoint.previous_secret = None
        endpoint.previous_secret_expires_at = None
    endpoint.secret = signing.generate_secret()
    return endpoint.secret


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
        endpoint = _endpoint(session, endpoint_id, for_update=True)
        rotate_endpoint_secret(endpoint, grace)
        session.flush()
        return jsonify({**endpoint_json(endpoint), "secret": endpoint.secret})
