"""The sandbox's settings: ``SANDBOX_*`` environment variables, overridden by command-line flags.

The sandbox is a development and test tool, not a Payhook service, so its settings are not in
docs/configuration.md; docs/sandbox.md lists them.
"""

from __future__ import annotations

import dataclasses
import os
import typing
from collections.abc import Mapping
from typing import Any

from .errors import SandboxError

PREFIX = "SANDBOX_"


@dataclasses.dataclass(frozen=True)
class Settings:
    """Every setting of the sandbox; the variable of ``field`` is ``SANDBOX_FIELD``."""

    host: str = "127.0.0.1"
    """Address the sandbox listens on."""
    port: int = 8645
    """Port the sandbox listens on (``make run``'s project port)."""
    consumer_key: str = "payhook-sandbox-key"
    """The Daraja app's consumer key that ``/oauth/v1/generate`` accepts."""
    consumer_secret: str = "payhook-sandbox-secret"
    """The Daraja app's consumer secret that ``/oauth/v1/generate`` accepts."""
    shortcode: str = "174379"
    """The business short code STK Push and Query accept (Safaricom's public sandbox till)."""
    passkey: str = "bfb279f9aa9bdbcf158e97dd71a467cd2e0c893059b10f78e6b72ada1ed2c919"
    """The Lipa na M-Pesa passkey of ``shortcode``: Password must be base64(shortcode + passkey + Timestamp)."""
    token_expires_in: int = 3599
    """Seconds an access token lives (Daraja: 3599)."""
    seed: int = 0
    """Seed of the outcome draws (and of most generated ids): the same seed and requests give the same outcomes."""
    callback_delay: float = 2.0
    """Seconds between an accepted request and its callback (the customer typing a PIN)."""
    late_delay: float = 60.0
    """Seconds before a late callback is sent."""
    drop_ratio: float = 0.0
    """Share of STK Pushes whose callback is never sent (unless a scenario says otherwise)."""
    late_ratio: float = 0.0
    """Share of STK Pushes whose callback is sent after ``late_delay`` instead of ``callback_delay``."""
    query_latency: float = 0.0
    """Seconds each STK Push Query takes to answer, so concurrent queries of one id overlap."""
    callback_timeout: float = 10.0
    """Seconds a callback POST may take before it counts as failed."""

    def __post_init__(self) -> None:
        for name in ("drop_ratio", "late_ratio"):
            if not 0 <= getattr(self, name) <= 1:
                raise SandboxError(f"{PREFIX}{name.upper()} must be between 0 and 1")
        if self.drop_ratio + self.late_ratio > 1:
            raise SandboxError(f"{PREFIX}DROP_RATIO + {PREFIX}LATE_RATIO must not exceed 1")
        for name in ("callback_delay", "late_delay", "query_latency", "callback_timeout"):
            if getattr(self, name) < 0:
                raise SandboxError(f"{PREFIX}{name.upper()} must not be negative")
        if self.token_expires_in <= 0:
            raise SandboxError(f"{PREFIX}TOKEN_EXPIRES_IN must be positive")


def load(environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """The settings from ``SANDBOX_*`` variables, then ``overrides`` (None values are ignored).

    Raises:
      SandboxError: when a variable cannot be converted, or a value is out of range.
    """
    env = os.environ if environ is None else environ
    hints = typing.get_type_hints(Settings)
    values: dict[str, Any] = {}
    for field in dataclasses.fields(Settings):
        var = PREFIX + field.name.upper()
        if overrides.get(field.name) is not None:
            values[field.name] = overrides[field.name]
        elif var in env:
            kind = hints[field.name]
            try:
                values[field.name] = kind(env[var]) if kind in (int, float) else env[var]
            except ValueError:
                raise SandboxError(f"{var} must be {kind.__name__}, got {env[var]!r}") from None
    unknown = set(overrides) - {f.name for f in dataclasses.fields(Settings)}
    if unknown:
        raise SandboxError(f"unknown settings: {', '.join(sorted(unknown))}")
    return Settings(**values)
