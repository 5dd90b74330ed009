"""Merchants: creating and changing them, their settings, and the callback URLs they give Daraja."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from payhook_shared import ids, merchant_settings
from payhook_shared.callbacks.mpesa import NORMALISERS
from payhook_shared.store import Merchant

from .. import audit, auth
from ..errors import NotFound


def callback_urls(base_url: str, merchant: Merchant) -> dict[str, str]:
    """The URLs a merchant pastes into Daraja, by callback kind (``stk``, ``c2b-confirmation``, …)."""
    root = f"{base_url.rstrip('/')}/cb/{merchant.id}/{merchant.callback_token}"
    return {kind: f"{root}/{kind}" for kind in NORMALISERS}


def visible_merchant(session: Session, merchant_id: str) -> Merchant:
    """The merchant, if the current principal may see it.

    Raises:
      NotFound: for an unknown merchant or another merchant's alike.
    """
    auth.check_merchant_access(merchant_id)
    merchant = session.get(Merchant, merchant_id)
    if merchant is None:
        raise NotFound(f"no merchant {merchant_id}")
    return merchant


def new_merchant(name: str, notification_email: str, priority_rules: list[dict[str, Any]] | None) -> Merchant:
    """A new enabled merchant with a fresh callback token (the caller adds it to a session)."""
    return Merchant(id=ids.new_id("mch"), name=name, notification_email=notification_email,
                    callback_token=ids.new_token(),
                    settings={"priority_rules": priority_rules} if priority_rules else {}, enabled=True)


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
