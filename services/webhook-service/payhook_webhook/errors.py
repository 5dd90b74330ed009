"""webhook-service errors and the JSON answers they become.

Every refusal names its problem in ``{"error": {"code", "message"}}`` so a
provider's support team or a merchant can act on it.
"""

from __future__ import annotations

import logging

from flask import Flask, jsonify
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import HTTPException

from payhook_shared.daraja.errors import (
    CredentialsError, DarajaAuthError, DarajaError, DarajaRateLimited, DarajaRejected, DarajaUnavailable,
)

log = logging.getLogger(__name__)


class WebhookServiceError(Exception):
    """Root of the errors the webhook-service answers with."""

    status = 500
    code = "internal_error"
    headers: dict[str, str] = {}

    def __init__(self, message: str, fields: dict | None = None):
        super().__init__(message)
        self.message = message
        self.fields = fields


class InvalidPayload(WebhookServiceError):
    """The body is not the JSON the route expects."""

    status = 400
    code = "invalid_payload"


class UnsupportedMediaType(WebhookServiceError):
    status = 415
    code = "unsupported_media_type"


class Unauthorized(WebhookServiceError):
    """No API key, a malformed one, or one that is unknown or revoked."""

    status = 401
    code = "unauthorized"
    headers = {"WWW-Authenticate": 'Bearer realm="payhook"'}


class TooManyStreams(WebhookServiceError):
    """The API key already has as many live streams open as ``STREAM_MAX_PER_KEY`` allows."""

    status = 429
    code = "too_many_streams"


class SignatureRefused(WebhookServiceError):
    """A gateway callback whose signature is missing, malformed, wrong or too old; ``code`` says which."""

    status = 401

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


class Forbidden(WebhookServiceError):
    """The caller is known but may not do this."""

    status = 403
    code = "forbidden"


class SourceNotAllowed(Forbidden):
    """A callback came from an address outside the provider's allowlist."""

    code = "source_not_allowed"


class NotFound(WebhookServiceError):
    status = 404
    code = "not_found"


class StoreUnavailable(WebhookServiceError):
    """The store could not record the request, so it must not be acknowledged."""

    status = 503
    code = "store_unavailable"


class ProfileChanged(StoreUnavailable):
    """The merchant changed while its callback was being recorded: nothing was written.

    Ingest reads the merchant again and retries; only if it keeps changing does the
    provider get this 503 (and retry later).
    """

    code = "merchant_changed"

    def __init__(self, merchant_id: str):
        super().__init__("the merchant's configuration changed while recording; retry")
        self.merchant_id = merchant_id


def _answer(status: int, code: str, message: str, fields: dict | None = None):
    body: dict = {"error": {"code": code, "message": message}}
    if fields:
        body["error"]["fields"] = fields
    return jsonify(body), status


# Daraja's refusals by kind: the merchant's to fix (4xx), or Daraja's (5xx, safe to retry).
_DARAJA_ANSWERS = {
    DarajaAuthError: (422, "daraja_credentials_refused"),
    DarajaRejected: (422, "daraja_rejected"),
    DarajaRateLimited: (429, "daraja_rate_limited"),
    DarajaUnavailable: (502, "daraja_unavailable"),
}


def _daraja_fields(exc: DarajaError) -> dict | None:
    """Daraja's own ``errorCode`` and ``requestId``, for the merchant to quote to Safaricom."""
    fields = {name: value for name, value in (("daraja_error_code", exc.error_code),
                                              ("daraja_request_id", exc.request_id)) if value}
    return fields or None


def register(app: Flask) -> None:
    """Install JSON error handlers on ``app``."""

    @app.errorhandler(WebhookServiceError)
    def _service_error(exc: WebhookServiceError):
        body, status = _answer(exc.status, exc.code, exc.message, exc.fields)
        body.headers.update(exc.headers)
        return body, status

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        code = (exc.name or "error").lower().replace(" ", "_")
        return _answer(exc.code or 500, code, exc.description or exc.name)

    @app.errorhandler(DarajaError)
    def _daraja_error(exc: DarajaError):
        status, code = _DARAJA_ANSWERS.get(type(exc), (502, "daraja_error"))
        body, status = _answer(status, code, exc.message, _daraja_fields(exc))
        if status == 429:
            body.headers["Retry-After"] = "1"
        return body, status

    @app.errorhandler(CredentialsError)
    def _credentials_error(exc: CredentialsError):
        log.error("Daraja credentials unusable: %s", exc)
        return _answer(503, "credentials_unavailable", str(exc))

    @app.errorhandler(SQLAlchemyError)
    def _store_error(exc: SQLAlchemyError):
        log.error("store unavailable: %s", type(exc).__name__, exc_info=exc)
        return _answer(503, StoreUnavailable.code, "the request could not be recorded; retry later")
