"""Quarantine: provider callbacks on a valid callback URL whose body failed validation, kept to be reprocessed.

Safaricom does not retry a callback it got a 400 for, and a gateway gives up after a few tries: a body
refused by a schema Payhook got wrong would be lost. So a body that came on a valid URL (merchant and
token right, and for a gateway source its signature verified) but is not JSON, not declared as JSON, or
fails its schema is kept — raw bytes, the headers that explain it, the error — and the provider still
gets its 4xx. Anonymous bodies (unknown URL or token, bad signature) are never kept, nor bodies over
``MAX_BODY_BYTES`` (413): they were not read whole.

The write happens only on that failure path, in its own transaction. If the store fails then, the
provider's 4xx stands (its body is still invalid) and the loss is logged at ERROR with the body's size
and SHA-256, and counted (``payhook_callbacks_quarantine_failures_total``).

``reprocess`` runs a kept body through ``receive``, the path a live callback takes (the Content-Type
is not checked again: it cannot change). A body that now passes is recorded — deduplicated against an
event that arrived meanwhile — and the row marked ``resolved`` with the event's id; one that still fails
stays quarantined with the new error.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import logging
from typing import Any

from flask import current_app, request
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from payhook_shared import ids
from payhook_shared.callbacks import parse_json
from payhook_shared.errors import DecodeError
from payhook_shared.store import QuarantinedCallback, QuarantineState
from payhook_shared.store.models import utcnow

from . import ingest, metrics, receive
from .errors import NotFound

log = logging.getLogger(__name__)

MPESA = "mpesa"
# The kind of every gateway callback (its provider says which gateway).
GATEWAY_KIND = "webhook"
# Headers that help to understand a refused body; never a signature (Flutterwave's verif-hash is the secret).
KEPT_HEADERS = ("Content-Type", "Content-Length", "Transfer-Encoding", "Content-Encoding", "User-Agent",
                "X-Request-ID", "X-Forwarded-For")
QUARANTINED, RESOLVED = QuarantineState.QUARANTINED.value, QuarantineState.RESOLVED.value
REASONS = ("json", "content_type", "schema")


def _headers() -> dict[str, str]:
    kept = {name: request.headers[name][:500] for name in KEPT_HEADERS if name in request.headers}
    kept["remote_addr"] = request.remote_addr or ""
    return kept


def keep(merchant_id: str, provider: str, kind: str, raw: bytes, reason: str, error: str,
         error_fields: dict | None = None, source_id: str | None = None, message_id: str | None = None) -> str | None:
    """Quarantine the current request's body ``raw``, refused for ``reason``.

    Returns the row's id, or ``None`` when the store failed (logged and counted; the caller's 4xx stands).
    """
    row = QuarantinedCallback(
        id=ids.new_id("qcb"), merchant_id=merchant_id, provider=provider, kind=kind, source_id=source_id,
        message_id=message_id, content_type=(request.content_type or "")[:200], headers=_headers(), body=raw,
        reason=reason, error=error, error_fields=error_fields or None, state=QUARANTINED, attempts=0,
        received_at=utcnow())
    try:
        with current_app.extensions["payhook.store"].write() as session:
            session.add(row)
    except SQLAlchemyError as exc:
        metrics.QUARANTINE_FAILURES.labels(provider).inc()
        log.error("could not quarantine an invalid %s %s callback (%d bytes, sha256 %s): %s; it is lost",
                  provider, kind, len(raw), hashlib.sha256(raw).hexdigest(), type(exc).__name__)
        return None
    metrics.QUARANTINED.labels(provider, kind).inc()
    log.warning("quarantined an invalid %s %s callback as %s (%s): %s", provider, kind, row.id, reason, error[:500])
    return row.id


@dataclasses.dataclass
class Reprocessed:
    """What a reprocess made of one quarantined callback."""

    id: str
    state: str
    event_id: str | None = None
    duplicate: bool = False
    error: str | None = None


def _run(row: QuarantinedCallback) -> ingest.Recorded:
    payload = parse_json(row.body)
    if row.provider == MPESA:
        directory = current_app.extensions["payhook.merchants"]
        directory.forget(row.merchant_id)

        def reload():
            directory.forget(row.merchant_id)
            return directory.get(row.merchant_id)

        return receive.mpesa(directory.get(row.merchant_id), row.body, payload, row.kind, reload).recorded
    return receive.gateway(row.provider, row.source_id, row.merchant_id, row.body, payload, row.message_id)


def reprocess(quarantine_id: str) -> Reprocessed:
    """Validate and record a quarantined callback again, as a live one; the row is updated with the outcome.

    A resolved row is left as it is. Raises ``NotFound`` for an unknown id; a store failure propagates.
    """
    store = current_app.extensions["payhook.store"]
    with store.read() as session:
        row = session.get(QuarantinedCallback, quarantine_id)
        if row is None:
            raise NotFound(f"no quarantined callback {quarantine_id}")
        session.expunge(row)
    if row.state == RESOLVED:
        return Reprocessed(row.id, RESOLVED, row.event_id)
    try:
        recorded, failure = _run(row), None
    except DecodeError as exc:
        recorded, failure = None, exc
    now = utcnow()
    with store.write() as session:
        current = session.get(QuarantinedCallback, quarantine_id)
        current.attempts += 1
        current.last_attempt_at = now
        if failure is not None:
            current.reason = _reason(row.body)
            current.error = str(failure)
            current.error_fields = failure.messages or None
        elif current.state != RESOLVED:
            current.state, current.resolved_at, current.event_id = RESOLVED, now, recorded.event_id
    if failure is not None:
        log.info("quarantined callback %s is still invalid: %s", quarantine_id, failure)
        return Reprocessed(quarantine_id, QUARANTINED, error=str(failure))
    log.info("reprocessed quarantined callback %s into %s%s", quarantine_id, recorded.event_id,
             " (already recorded)" if recorded.duplicate else "")
    return Reprocessed(quarantine_id, RESOLVED, recorded.event_id, recorded.duplicate)


def _reason(raw: bytes) -> str:
    """Why a kept body still fails: not JSON at all, or not the schema."""
    try:
        parse_json(raw)
    except DecodeError:
        return "json"
    return "schema"


def open_ids(session: Session, merchant_id: str | None = None) -> list[str]:
    """Every quarantined (unresolved) callback's id, oldest first, of one merchant or all."""
    stmt = select(QuarantinedCallback.id).where(QuarantinedCallback.state == QUARANTINED)
    if merchant_id is not None:
        stmt = stmt.where(QuarantinedCallback.merchant_id == merchant_id)
    return list(session.scalars(stmt.order_by(QuarantinedCallback.id)))


def page(session: Session, merchant_id: str | None, state: str | None, after: str | None,
         limit: int) -> tuple[list[QuarantinedCallback], str | None]:
    """Quarantined callbacks newest first, of one merchant or all, in ``state`` or any; ``(rows, next_after)``."""
    stmt = select(QuarantinedCallback)
    if merchant_id is not None:
        stmt = stmt.where(QuarantinedCallback.merchant_id == merchant_id)
    if state:
        stmt = stmt.where(QuarantinedCallback.state == state)
    if after:
        stmt = stmt.where(QuarantinedCallback.id < after)
    rows = list(session.scalars(stmt.order_by(QuarantinedCallback.id.desc()).limit(limit + 1)))
    return rows[:limit], (rows[limit - 1].id if len(rows) > limit else None)


def body_text(row: QuarantinedCallback) -> str | None:
    """The body as text when it is UTF-8, else ``None``."""
    try:
        return row.body.decode("utf-8")
    except UnicodeDecodeError:
        return None


def as_json(row: QuarantinedCallback, with_body: bool = False) -> dict[str, Any]:
    """A quarantined callback as the API shows it; ``with_body`` adds the headers and the body."""
    out = {
        "id": row.id, "merchant_id": row.merchant_id, "provider": row.provider, "kind": row.kind,
        "source_id": row.source_id, "state": row.state, "reason": row.reason, "error": row.error,
        "error_fields": row.error_fields, "attempts": row.attempts, "content_type": row.content_type,
        "size": len(row.body), "received_at": _iso(row.received_at), "last_attempt_at": _iso(row.last_attempt_at),
        "resolved_at": _iso(row.resolved_at), "event_id": row.event_id,
    }
    if with_body:
        out.update(headers=row.headers, body_text=body_text(row),
                   body_base64=base64.b64encode(row.body).decode("ascii"))
    return out


def _iso(value) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None
