"""API keys: revoking one, audited (creating and listing them is ``auth``'s)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from payhook_shared.store import ApiKey

from .. import audit, auth
from ..errors import NotFound


def revoke(session: Session, principal: auth.Principal, key_id: str) -> tuple[ApiKey, bool]:
    """Revoke a key and end its console sessions, audited as ``principal``'s; returns it and whether it was live.

    The API and the ``flask`` command both revoke through here; revoking again changes nothing.

    Raises:
      NotFound: if no key has that id.
    """
    try:
        key, newly = auth.revoke_api_key(session, key_id)
    except LookupError as exc:
        raise NotFound(str(exc)) from None
    if newly:
        audit.record(session, principal, "revoke_api_key", key_id, key_merchant_id=key.merchant_id)
    return key, newly
