"""Verifying gateway signatures on the raw request bytes, before anything is parsed.

One function per scheme, each as its provider documents it:

- Stripe: ``Stripe-Signature: t=<unix time>,v1=<hex>[,v1=<hex>…]``; each ``v1`` is
  HMAC-SHA256 of ``"<t>.<body>"`` keyed with the endpoint's ``whsec_…`` signing
  secret; ``t`` must be within 5 minutes. Tested against ``stripe.WebhookSignature``.
- Paystack: ``x-paystack-signature``: hex HMAC-SHA512 of the body keyed with the secret key.
- Flutterwave: ``flutterwave-signature``: base64 HMAC-SHA256 of the body keyed
  with the dashboard's secret hash; older integrations send only ``verif-hash``,
  the secret hash itself, which is compared as it is.
- Standard Webhooks: the ``standardwebhooks`` package (``webhook-id``,
  ``webhook-timestamp``, ``webhook-signature``; 5 minutes).
- ``hmac``: the source's own configuration (header, sha256/sha512, hex/base64,
  optional prefix such as ``sha256=``, optional signed timestamp header: then
  the signed content is ``"<timestamp>.<body>"``).

Every secret active during a rotation is tried, and every comparison is
``hmac.compare_digest`` over all candidates, so timing does not tell which
secret or signature came close.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Mapping, Sequence
from typing import Any

import standardwebhooks

from payhook_shared.callbacks.gateways import FLUTTERWAVE, HMAC, PAYSTACK, STANDARD_WEBHOOKS, STRIPE

from .errors import SignatureRefused

STRIPE_TOLERANCE_SECONDS = 300
DEFAULT_HMAC_TOLERANCE_SECONDS = 300
MAX_SIGNATURE_HEADER = 4096
_DIGESTS = {"sha256": hashlib.sha256, "sha512": hashlib.sha512}


def _header(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name)
    if not value or not value.strip():
        raise SignatureRefused("missing_signature", f"missing {name} header")
    if len(value) > MAX_SIGNATURE_HEADER:
        raise SignatureRefused("malformed_signature", f"{name} header is too long")
    return value.strip()


def _any_equal(expected: Sequence[bytes], presented: Sequence[bytes]) -> bool:
    """Whether any expected value equals any presented one, comparing every pair in constant time."""
    matched = False
    for want in expected:
        for got in presented:
            matched |= hmac.compare_digest(want, got)
    return matched


def _mac(secret: str, content: bytes, digest: str = "sha256") -> bytes:
    return hmac.new(secret.encode("utf-8"), content, _DIGESTS[digest]).digest()


def _unix_seconds(text: str) -> bool:
    """Whether ``text`` is plain ASCII digits (``str.isdigit`` also accepts "²" and other scripts' digits)."""
    return text.isascii() and text.isdigit() and len(text) <= 12


def _fresh(timestamp: int, tolerance: int, now: float) -> None:
    if abs(now - timestamp) > tolerance:
        raise SignatureRefused("stale_timestamp", f"signature timestamp is more than {tolerance} s from now")


def verify_stripe(headers: Mapping[str, str], body: bytes, secrets: Sequence[str], now: float) -> None:
    """Check ``Stripe-Signature``."""
    header = _header(headers, "Stripe-Signature")
    timestamps, signatures = [], []
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        if key == "t":
            timestamps.append(value)
        elif key == "v1":
            signatures.append(value.strip().lower().encode())
    if len(timestamps) != 1 or not _unix_seconds(timestamps[0]) or not signatures:
        raise SignatureRefused("malformed_signature", "Stripe-Signature needs one t= and at least one v1=")
    timestamp = int(timestamps[0])
    _fresh(timestamp, STRIPE_TOLERANCE_SECONDS, now)
    content = b"%d." % timestamp + body
    expected = [_mac(s, content).hex().encode() for s in secrets]
    if not _any_equal(expected, signatures):
        raise SignatureRefused("bad_signature", "no v1 signature matches")


def verify_paystack(headers: Mapping[str, str], body: bytes, secrets: Sequence[str], now: float) -> None:
    """Check ``x-paystack-signature``."""
    presented = _header(headers, "x-paystack-signature").lower().encode()
    if not _any_equal([_mac(s, body, "sha512").hex().encode() for s in secrets], [presented]):
        raise SignatureRefused("bad_signature", "x-paystack-signature does not match")


def verify_flutterwave(headers: Mapping[str, str], body: bytes, secrets: Sequence[str], now: float) -> None:
    """Check ``flutterwave-signature`` when sent, else the ``verif-hash`` secret hash."""
    if headers.get("flutterwave-signature"):
        presented = _header(headers, "flutterwave-signature").encode()
        expected = [base64.b64encode(_mac(s, body)) for s in secrets]
        if not _any_equal(expected, [presented]):
            raise SignatureRefused("bad_signature", "flutterwave-signature does not match")
        return
    if not headers.get("verif-hash"):
        raise SignatureRefused("missing_signature", "missing flutterwave-signature or verif-hash header")
    presented = _header(headers, "verif-hash").encode()
    if not _any_equal([s.encode("utf-8") for s in secrets], [presented]):
        raise SignatureRefused("bad_signature", "verif-hash does not match the secret hash")


def verify_standard(headers: Mapping[str, str], body: bytes, secrets: Sequence[str], now: float) -> str:
    """Check Standard Webhooks headers; the ``webhook-id``, which is the message's own id."""
    plain = {k.lower(): v for k, v in headers.items()}
    for name in ("webhook-id", "webhook-timestamp", "webhook-signature"):
        _header(plain, name)
    try:
        body.decode("utf-8")
        timestamp = int(plain["webhook-timestamp"])
    except (UnicodeDecodeError, ValueError):
        raise SignatureRefused("malformed_signature", "webhook-timestamp must be an integer and the body UTF-8") \
            from None
    _fresh(timestamp, STRIPE_TOLERANCE_SECONDS, now)
    matched = False
    for secret in secrets:
        try:
            standardwebhooks.Webhook(secret).verify(body, plain, json_parse=False)
            matched = True
        except (standardwebhooks.WebhookVerificationError, ValueError, binascii.Error):
            continue
    if not matched:
        raise SignatureRefused("bad_signature", "no webhook-signature matches")
    return plain["webhook-id"][:200]


def _decode(value: str, encoding: str) -> bytes:
    try:
        return bytes.fromhex(value) if encoding == "hex" else base64.b64decode(value, validate=True)
    except (ValueError, binascii.Error):
        raise SignatureRefused("malformed_signature", f"signature is not {encoding}") from None


def verify_hmac(headers: Mapping[str, str], body: bytes, secrets: Sequence[str], now: float,
                config: Mapping[str, Any]) -> None:
    """Check a signature made as the source's ``config`` describes."""
    value = _header(headers, config["header"])
    prefix = config.get("prefix") or ""
    if prefix:
        if not value.startswith(prefix):
            raise SignatureRefused("malformed_signature", f"signature must start with {prefix!r}")
        value = value[len(prefix):]
    presented = _decode(value.strip(), config.get("encoding", "hex"))
    content = body
    if config.get("timestamp_header"):
        stamp = _header(headers, config["timestamp_header"])
        if not _unix_seconds(stamp):
            raise SignatureRefused("malformed_signature", f"{config['timestamp_header']} must be unix seconds")
        _fresh(int(stamp), int(config.get("tolerance_seconds") or DEFAULT_HMAC_TOLERANCE_SECONDS), now)
        content = stamp.encode() + b"." + body
    expected = [_mac(s, content, config.get("algorithm", "sha256")) for s in secrets]
    if not _any_equal(expected, [presented]):
        raise SignatureRefused("bad_signature", f"{config['header']} does not match")


def verify(provider: str, config: Mapping[str, Any], secrets: Sequence[str], headers: Mapping[str, str],
           body: bytes, now: float | None = None) -> str | None:
    """Verify one request for a source of ``provider``; the sender's message id where the scheme has one.

    Raises:
      SignatureRefused: (401) naming the reason: missing, malformed or wrong signature, or a stale timestamp.
    """
    current = time.time() if now is None else now
    if provider == STRIPE:
        verify_stripe(headers, body, secrets, current)
    elif provider == PAYSTACK:
        verify_paystack(headers, body, secrets, current)
    elif provider == FLUTTERWAVE:
        verify_flutterwave(headers, body, secrets, current)
    elif provider == STANDARD_WEBHOOKS:
        return verify_standard(headers, body, secrets, current)
    elif provider == HMAC:
        verify_hmac(headers, body, secrets, current, config)
    else:
        raise SignatureRefused("bad_signature", f"unknown provider {provider}")
    return None
