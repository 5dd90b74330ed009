"""Signing gateway callbacks exactly as each provider does, for the tests."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

from payhook_shared import signing

STRIPE_SECRET = "whsec_test_6f1c2a9d4b7e8f0a1c3d5e7f9a0b2c4d"
PAYSTACK_SECRET = "sk_test_8f3b9c2d1e4a5b6c7d8e9f0a1b2c3d4e5f6a7b8c"
FLUTTERWAVE_SECRET = "flw-secret-hash-3b1e9a77c2d54f08"
HMAC_SECRET = "hmac-shared-secret-0d9f8e7c6b5a"
STANDARD_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def stripe_headers(body: bytes, secret: str = STRIPE_SECRET, timestamp: int | None = None) -> dict[str, str]:
    """``Stripe-Signature`` as Stripe sends it: ``t=…,v1=<hex HMAC-SHA256 of "t.body">``."""
    ts = int(time.time()) if timestamp is None else timestamp
    sig = hmac.new(secret.encode(), b"%d." % ts + body, hashlib.sha256).hexdigest()
    return {"Stripe-Signature": f"t={ts},v1={sig}"}


def paystack_headers(body: bytes, secret: str = PAYSTACK_SECRET, timestamp: int | None = None) -> dict[str, str]:
    """``x-paystack-signature``: hex HMAC-SHA512 of the body with the secret key."""
    return {"x-paystack-signature": hmac.new(secret.encode(), body, hashlib.sha512).hexdigest()}


def flutterwave_headers(body: bytes, secret: str = FLUTTERWAVE_SECRET, timestamp: int | None = None) -> dict[str, str]:
    """``flutterwave-signature`` (base64 HMAC-SHA256 of the body with the secret hash) and ``verif-hash``."""
    sig = base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()
    return {"flutterwave-signature": sig}


def flutterwave_legacy_headers(body: bytes, secret: str = FLUTTERWAVE_SECRET, timestamp: int | None = None):
    """The older form: ``verif-hash`` is the secret hash itself."""
    return {"verif-hash": secret}


HMAC_CONFIG = {"header": "X-Shop-Signature", "algorithm": "sha256", "encoding": "hex", "prefix": "sha256=",
               "timestamp_header": "X-Shop-Timestamp", "tolerance_seconds": 300}


def hmac_headers(body: bytes, secret: str = HMAC_SECRET, timestamp: int | None = None) -> dict[str, str]:
    """The generic scheme of ``HMAC_CONFIG``: ``sha256=<hex HMAC of "ts.body">``."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    sig = hmac.new(secret.encode(), ts.encode() + b"." + body, hashlib.sha256).hexdigest()
    return {"X-Shop-Signature": f"sha256={sig}", "X-Shop-Timestamp": ts}


def standard_headers(body: bytes, secret: str = STANDARD_SECRET, timestamp: int | None = None,
                     msg_id: str = "msg_2Lb1zR3kQ7") -> dict[str, str]:
    """Standard Webhooks headers."""
    return signing.headers([secret], msg_id, body, timestamp)
