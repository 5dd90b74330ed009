"""Delivery failures, categorised: every attempt records exactly one category."""

from __future__ import annotations

import enum


class DeliveryError(Exception):
    """Root of the delivery-worker's errors."""


class Category(str, enum.Enum):
    """What happened on one attempt; each failure category has its own retry strategy."""

    SUCCESS = "success"
    NETWORK = "network"            # refused, reset, DNS
    TIMEOUT = "timeout"
    TLS = "tls"
    REDIRECT = "redirect"          # 3xx: a failure, never followed
    RATE_LIMITED = "rate_limited"  # 429
    AUTH = "auth"                  # 401, 403
    GONE = "gone"                  # 410
    CLIENT_ERROR = "client_error"  # other 4xx
    SERVER_ERROR = "server_error"  # 5xx
    OTHER = "other"                # a status outside 200-599
    BLOCKED = "blocked"            # refused by the SSRF guard; nothing was sent

    @classmethod
    def of_status(cls, status: int) -> "Category":
        """The category of an HTTP response status."""
        if 200 <= status < 300:
            return cls.SUCCESS
        if 300 <= status < 400:
            return cls.REDIRECT
        if status == 429:
            return cls.RATE_LIMITED
        if status in (401, 403):
            return cls.AUTH
        if status == 410:
            return cls.GONE
        if 400 <= status < 500:
            return cls.CLIENT_ERROR
        if 500 <= status < 600:
            return cls.SERVER_ERROR
        return cls.OTHER
