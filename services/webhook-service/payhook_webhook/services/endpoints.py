"""Webhook endpoints: adding and changing them, rotating their secrets, and their health."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from payhook_shared import endpoint_headers, ids, signing
from payhook_shared.store import DeliveryAttempt, Endpoint, Merchant
from payhook_shared.store.models import utcnow

from .. import audit, auth
from ..errors import NotFound
from ..reads import Scope
from .common import iso

#: The category of a successful attempt.
SUCCESS = "success"
#: The windows an endpoint's health is shown over.
WINDOWS = {"hour": dt.timedelta(hours=1), "day": dt.timedelta(days=1)}


def visible_endpoint(session: Session, endpoint_id: str, for_update: bool = False) -> Endpoint:
    """The endpoint, if the current principal may see it.

    Raises:
      NotFound: for an unknown endpoint or another merchant's alike.
    """
    endpoint = session.get(Endpoint, endpoint_id, with_for_update=for_update)
    if endpoint is None or not auth.may_see(endpoint.merchant_id):
        raise NotFound(f"no endpoint {endpoint_id}")
    return endpoint


def endpoint_in_scope(session: Session, scope: Scope, endpoint_id: str) -> Endpoint:
    """One endpoint the caller may see.

    Raises:
      NotFound: for an unknown id or another merchant's endpoint alike.
    """
    row = session.scalar(scope.only(select(Endpoint), Endpoint.merchant_id).where(Endpoint.id == endpoint_id))
    if row is None:
        raise NotFound(f"no endpoint {endpoint_id}")
    return row


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


def _percentile(ordered: list[int], fraction: float) -> float | None:
    """Linear interpolation between closest ranks, as PostgreSQL's ``percentile_cont``."""
    if not ordered:
        return None
    position = fraction * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def window_stats(session: Session, endpoint_id: str, since: dt.datetime) -> dict[str, Any]:
    """Attempts, success rate, p50/p95 latency and last success of an endpoint since ``since``."""
    window = (DeliveryAttempt.endpoint_id == endpoint_id, DeliveryAttempt.started_at >= since)
    succeeded = DeliveryAttempt.category == SUCCESS
    columns = [func.count(), func.count().filter(succeeded), func.max(DeliveryAttempt.started_at).filter(succeeded)]
    postgresql = session.get_bind().dialect.name == "postgresql"
    if postgresql:
        columns += [func.percentile_cont(q).within_group(DeliveryAttempt.duration_ms) for q in (0.5, 0.95)]
    row = session.execute(select(*columns).where(*window)).one()
    attempts, successes, last_success = row[0], row[1], row[2]
    if postgresql:
        p50, p95 = row[3], row[4]
    else:
        # SQLite has no percentile function; its stores are small.
        durations = list(session.scalars(select(DeliveryAttempt.duration_ms).where(*window)
                                         .order_by(DeliveryAttempt.duration_ms)))
        p50, p95 = _percentile(durations, 0.5), _percentile(durations, 0.95)
    if isinstance(last_success, str):  # SQLite's max() of a timestamp comes back as text
        last_success = dt.datetime.fromisoformat(last_success).replace(tzinfo=dt.timezone.utc)
    return {"attempts": attempts, "succeeded": successes,
            "success_rate": round(100 * successes / attempts, 1) if attempts else None,
            "p50_ms": round(p50, 1) if p50 is not None else None, "p95_ms": round(p95, 1) if p95 is not None else None,
            "last_success_at": iso(last_success)}


def circuit_state(endpoint: Endpoint, now: dt.datetime) -> str:
    """``closed``, ``open`` (deliveries wait) or ``half_open`` (the next delivery probes)."""
    if endpoint.circuit_open_until is None:
        return "closed"
    return "open" if endpoint.circuit_open_until > now else "half_open"
