"""Standard Webhooks signing (https://www.standardwebhooks.com/).

The signed content is ``{webhook-id}.{webhook-timestamp}.{body}``; the
signature is ``v1,`` + base64(HMAC-SHA256(secret, content)), where the secret
is the base64 part of a ``whsec_`` string.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Iterable, Mapping

from .errors import PayhookError

SECRET_PREFIX = "whsec_"
DEFAULT_TOLERANCE_SECONDS = 5 * 60


class SignatureError(PayhookError):
    """A webhook's signature headers are missing, stale or do not match."""


def generate_secret() -> str:
    """A fresh endpoint secret: ``whsec_`` + base64 of 24 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(24)).decode()


def _key(secret: str) -> bytes:
    if secret.startswith(SECRET_PREFIX):
        secret = secret[len(SECRET_PREFIX):]
    return base64.b64decode(secret)


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``v1,<base64>`` signature of one webhook."""
    content = b"%s.%d.%s" % (msg_id.encode(), timestamp, body)
    digest = hmac.new(_key(secret), content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def headers(secrets_: Iterable[str], msg_id: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    """Standard Webhooks headers, signed by every given secret.

    Several secrets sign at once during a rotation's grace window; their
    signatures are space-separated as the spec allows.
    """
    ts = int(time.time()) if timestamp is None else timestamp
    signatures = " ".join(sign(s, msg_id, ts, body) for s in secrets_)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": signatures,
    }


def verify(secret: str, request_headers: Mapping[str, str], body: bytes,
           tolerance: int = DEFAULT_TOLERANCE_SECONDS, now: float | None = None) -> None:
    """Check a received webhook as a receiver would.

    Raises:
      SignatureError: if a header is missing, the timestamp is outside
        ``tolerance`` seconds, or no ``v1`` signature matches.
    """
    lowered = {k.lower(): v for k, v in request_headers.items()}
    try:
        msg_id = lowered["webhook-id"]
        ts_text = lowered["webhook-timestamp"]
        sig_header = lowered["webhook-signature"]
    except KeyError as exc:
        raise SignatureError(f"missing header {exc.args[0]}") from None
    try:
        ts = int(ts_text)
    except ValueError:
        raise SignatureError("webhook-timestamp is not an integer") from None
    current = time.time() if now is None else now
    if abs(current - ts) > tolerance:
        raise SignatureError("webhook-timestamp outside tolerance")
    expected = sign(secret, msg_id, ts, body).encode()
    for candidate in sig_header.split():
        if candidate.startswith("v1,") and hmac.compare_digest(candidate.encode(), expected):
            return
    raise SignatureError("no matching signature")
