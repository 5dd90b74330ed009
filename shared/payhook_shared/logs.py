"""Structured logging with correlation ids, shared by every service.

``bind(event_id=..., delivery_id=...)`` puts ids in a context variable; every
log record emitted in that context carries them, as JSON fields in production
(``LOG_FORMAT=json``) or as a ``key=value`` tail in development. Phone numbers
are masked and callback URL tokens redacted in every message and traceback,
whatever the caller passed.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import re
import sys
import uuid
from collections.abc import Iterator

from pythonjsonlogger.json import JsonFormatter

CORRELATION_FIELDS = ("correlation_id", "merchant_id", "event_id", "delivery_id", "email_id", "message_id")

_context: contextvars.ContextVar[dict[str, str]] = contextvars.ContextVar("payhook_log_context", default={})

# What a caller's correlation id may be: short, and nothing a log line could read as a separator or key=value.
_CORRELATION_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")

# Kenyan MSISDNs in any of their written forms: 254 or +254 or 0, then 7 or 1, then 8 more digits.
_PHONE = re.compile(r"(?<!\d)(\+?254|0)([17]\d{2})(\d{3})(\d{3})(?!\d)")

# The secret segment of a callback URL: the token in /cb/<merchant>/<token>/<kind> and /in/<source>/<token>.
_CALLBACK_TOKEN = re.compile(r"(/(?:cb|in)/+[^/\s?#\"']+/+)[^/\s?#\"']+")
REDACTED = "[redacted]"


def mask_phone(value: object) -> str:
    """Keep a phone number's country/operator prefix and last 3 digits only.

    ``254708374149`` → ``254708***149``; values that are already masked or
    hashed pass through unchanged.
    """
    text = "" if value is None else str(value)
    return _PHONE.sub(lambda m: f"{m.group(1)}{m.group(2)}***{m.group(4)}", text)


def correlation_id(given: str | None) -> str:
    """``given`` (e.g. a request's ``X-Request-ID``) if it is a short token, else a new random id.

    A token is 1–128 of ``A-Z a-z 0-9 . _ -``: anything else could forge fields in a
    text log line (spaces, ``=``, newlines) or bloat every line it is bound to.
    """
    if given and _CORRELATION_ID.fullmatch(given):
        return given
    return uuid.uuid4().hex


def redact_tokens(value: object) -> str:
    """``value`` with the token of every callback path in it replaced by ``[redacted]``.

    ``/cb/mch_1/4f3c…/stk`` → ``/cb/mch_1/[redacted]/stk``: the merchant or source id stays, to act on.
    """
    text = "" if value is None else str(value)
    return _CALLBACK_TOKEN.sub(rf"\1{REDACTED}", text)


def scrub(text: str) -> str:
    """A log message made safe: phone numbers masked, callback tokens redacted."""
    return redact_tokens(mask_phone(text))


class Scrub(logging.Filter):
    """Scrubs each record's message and traceback (``scrub``), for any logger or handler it is added to."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            record.msg = record.getMessage()
            record.args = None
        record.msg = scrub(record.msg)
        if record.exc_info:
            # Formatted once here so every formatter, JSON or text, prints the scrubbed text instead.
            record.exc_text = scrub(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = scrub(record.exc_text)
        return True


def push(**ids: object) -> contextvars.Token:
    """Attach correlation ids to later log records until ``pop(token)``."""
    return _context.set({**_context.get(), **{k: str(v) for k, v in ids.items() if v is not None}})


def pop(token: contextvars.Token) -> None:
    """Undo the ``push`` that returned ``token``."""
    _context.reset(token)


@contextlib.contextmanager
def bind(**ids: object) -> Iterator[None]:
    """Attach correlation ids to every log record emitted inside the block."""
    token = push(**ids)
    try:
        yield
    finally:
        pop(token)


def current_ids() -> dict[str, str]:
    """The correlation ids bound in the current context."""
    return dict(_context.get())


class _ContextFilter(Scrub):
    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in _context.get().items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return super().filter(record)


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        tail = " ".join(f"{k}={getattr(record, k)}" for k in CORRELATION_FIELDS if getattr(record, k, None))
        return f"{line} {tail}" if tail else line


def configure(service: str, fmt: str = "json", level: str = "INFO") -> None:
    """Route the root logger to stderr as JSON or text, with correlation ids."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_ContextFilter())
    if fmt == "json":
        handler.setFormatter(JsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            static_fields={"service": service},
        ))
    else:
        handler.setFormatter(_TextFormatter(f"%(asctime)s %(levelname)-5s {service} %(name)s: %(message)s"))
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level.upper())
