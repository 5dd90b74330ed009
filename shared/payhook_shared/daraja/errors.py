"""What calling Daraja, or reading a merchant's Daraja credentials, can fail with.

Every class derives from ``payhook_shared.errors.PayhookError``, the package's one root. Daraja's
own error bodies (``{"requestId", "errorCode", "errorMessage"}``) are carried on the exception so a
caller can name them to the merchant; the credentials themselves never are.
"""

from __future__ import annotations

from ..errors import PayhookError


class DarajaError(PayhookError):
    """A Daraja call that did not succeed.

    ``status`` is Daraja's HTTP status (``None`` when no answer came), ``error_code`` and
    ``request_id`` Daraja's own fields when its body had them.
    """

    def __init__(self, message: str, status: int | None = None, error_code: str | None = None,
                 request_id: str | None = None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.error_code = error_code
        self.request_id = request_id


class DarajaAuthError(DarajaError):
    """Daraja refused the merchant's consumer key and secret (OAuth) or the access token."""


class DarajaRejected(DarajaError):
    """Daraja refused the request itself (an invalid phone, shortcode, amount, …): sending it again will not help."""


class DarajaRateLimited(DarajaError):
    """Too many calls for one credential: Payhook's own limit (``DARAJA_RATE_LIMIT``) or Daraja's 429."""


class DarajaUnavailable(DarajaError):
    """Daraja did not answer in time, could not be reached, or failed (5xx): the call may be tried again later."""


class CredentialsError(PayhookError):
    """Stored credentials that cannot be used: no encryption key configured, or none of the keys decrypts them."""
