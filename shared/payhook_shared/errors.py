"""The root of every error the shared package raises."""


class PayhookError(Exception):
    """Root exception of the shared package."""


class DecodeError(PayhookError):
    """A message or payload did not match its schema.

    ``messages`` maps field names to what was wrong with them, as marshmallow
    reports it, so callers can name the offending field to whoever sent it.
    """

    def __init__(self, message: str, messages: dict | None = None):
        super().__init__(message)
        self.messages = messages or {}


class ConfigError(PayhookError):
    """A setting was missing or could not be converted to its type."""


class UnsafeURL(PayhookError):
    """An endpoint URL that Payhook refuses to call: not http(s), or it leads to a non-public address."""
