"""Gateway callbacks: ``POST /in/<source_id>/<token>``, one URL per configured source.

Order matters: the source is found and its token compared in constant time
(404 otherwise), its IP allowlist applied if on (403), then the signature is
verified on the raw bytes (401) before anything is parsed. Only then is the
body parsed (400 naming the field), recorded, and answered ``200``. A refusal
stores nothing; it is counted and logged at most once a minute per source and
reason, without the body or any secret.
"""

from __future__ import annotations

import hmac
import logging
import threading
import time

from flask import Blueprint, current_app, jsonify, request

from payhook_shared.callbacks import parse_json, sources
from payhook_shared.errors import DecodeError
from payhook_shared.logs import bind
from payhook_shared.store import Source

from .. import ingest, merchants, metrics, signatures
from ..priority_rules import classify, rules_of
from ..errors import (
    InvalidPayload, NotFound, ProfileChanged, SignatureRefused, SourceNotAllowed, UnsupportedMediaType,
)
from ..source_ip import enforce_source_allowlist

log = logging.getLogger(__name__)

bp = Blueprint("inbound", __name__, url_prefix="/in")

LOG_INTERVAL_SECONDS = 60.0


class RateLimitedLog:
    """Logs one line per key per interval, so a flood of forged callbacks cannot flood the logs."""

    def __init__(self, interval: float, max_keys: int = 10_000):
        self.interval = interval
        self.max_keys = max_keys
        self._last: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()

    def allow(self, key: tuple[str, str], now: float | None = None) -> bool:
        """Whether a line for ``key`` may be written now."""
        now = time.monotonic() if now is None else now
        with self._lock:
            if len(self._last) >= self.max_keys:
                self._last.clear()
            if now - self._last.get(key, -self.interval) < self.interval:
                return False
            self._last[key] = now
            return True


_refusal_log = RateLimitedLog(LOG_INTERVAL_SECONDS)


def _refused(source_id: str, provider: str, reason: str, message: str) -> None:
    metrics.SOURCE_REFUSED.labels(provider=provider, reason=reason).inc()
    if _refusal_log.allow((source_id[:40], reason)):
        log.warning("refused %s callback for source %s: %s (%s)", provider, source_id[:40], reason, message)


def _source(source_id: str, token: str) -> Source:
    store = current_app.extensions["payhook.store"]
    with store.read() as session:
        source = session.get(Source, source_id[:40])
    # Compare even when the source is unknown, so timing tells nothing.
    expected = source.callback_token if source else "0" * 32
    if not hmac.compare_digest(token.encode("utf-8", "surrogatepass"), expected.encode()) or source is None:
        _refused(source_id, "unknown", "unknown_source", "unknown source or token")
        raise NotFound("unknown callback URL")
    if not source.enabled:
        _refused(source_id, source.provider, "source_disabled", "source disabled")
        raise NotFound("unknown callback URL")
    return source


def _record(merchant: merchants.Profile, event, raw: bytes) -> ingest.Recorded:
    return current_app.extensions["payhook.recorder"].record(merchant, event, raw,
                                                            classify(event, rules=rules_of(merchant)))


@bp.post("/<source_id>/<token>")
def receive(source_id: str, token: str):
    """A gateway callback: verify its signature on the raw bytes, record it, then answer 200."""
    source = _source(source_id, token)
    config = source.config or {}
    if source.ip_allowlist_enabled:
        try:
            enforce_source_allowlist(source.provider, config.get("allowed_ips"))
        except SourceNotAllowed as exc:
            _refused(source.id, source.provider, "source_not_allowed", exc.message)
            raise
    raw = request.get_data(cache=False)
    try:
        message_id = signatures.verify(source.provider, config.get("hmac") or {}, source.verifying_secrets(),
                                       request.headers, raw)
    except SignatureRefused as exc:
        _refused(source.id, source.provider, exc.code, exc.message)
        raise
    if not request.mimetype or "json" not in request.mimetype:
        raise UnsupportedMediaType(f"expected application/json, got {request.mimetype or 'no content type'}")
    directory = current_app.extensions["payhook.merchants"]
    merchant = directory.get(source.merchant_id)
    with bind(merchant_id=merchant.id):
        try:
            event = sources.normalise(source.provider, parse_json(raw), raw, message_id)
        except DecodeError as exc:
            log.info("refused verified %s callback for source %s: %s", source.provider, source.id, exc)
            raise InvalidPayload(str(exc), exc.messages) from None
        event.details["source_id"] = source.id
        try:
            recorded = _record(merchant, event, raw)
        except ProfileChanged:
            # The cached merchant was stale and nothing was written: read it again and record once more.
            directory.forget(merchant.id)
            recorded = _record(directory.get(merchant.id), event, raw)
        if recorded.duplicate:
            log.info("duplicate %s callback for %s", source.provider, recorded.event_id)
    return jsonify(received=True, id=recorded.event_id)
