"""Mail failures, split by whether trying again can help."""


class MailError(Exception):
    """Root of the mail-worker's errors."""


class TransientMailError(MailError):
    """Connection trouble or an SMTP 4xx: try again later."""


class PermanentMailError(MailError):
    """An SMTP 5xx or an invalid address: trying again cannot help."""
