"""The audit log: who (an API key or a sign-in link), did what, to which row, and when.

The console records every sign-in and change; the JSON API records changes to
merchant settings and endpoints. An entry joins the caller's transaction, so it is written
exactly when the change it describes is.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from payhook_shared.store import AuditEntry

from .auth import Principal


def record(session: Session, principal: Principal, action: str, target: str = "", **details: Any) -> None:
    """Record that ``principal`` did ``action`` to ``target``, in the caller's transaction."""
    session.add(AuditEntry(api_key_id=principal.key_id, merchant_id=principal.merchant_id, action=action,
                           target=target[:200], details=details))
