"""Where email goes: an SMTP server, or ``.eml`` files when none is configured."""

from __future__ import annotations

import os
import smtplib
import ssl
import tempfile
import threading
import urllib.parse
from email.message import EmailMessage
from pathlib import Path
from typing import Protocol

from .errors import PermanentMailError, TransientMailError


class Transport(Protocol):
    def send(self, message: EmailMessage) -> None:
        """Hand ``message`` over, or raise a ``MailError``."""

    def close(self) -> None:
        """Release connections."""


class FileTransport:
    """Writes each message to ``<dir>/<message-id>.eml``, atomically."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)

    def send(self, message: EmailMessage) -> None:
        """Write the message; a resend overwrites the same file."""
        self.directory.mkdir(parents=True, exist_ok=True)
        name = message["Message-ID"].strip("<>").replace("/", "_") + ".eml"
        fd, tmp = tempfile.mkstemp(dir=self.directory, suffix=".tmp")
        with os.fdopen(fd, "wb") as fh:
            fh.write(message.as_bytes())
        os.replace(tmp, self.directory / name)

    def close(self) -> None:
        """Nothing to release."""


class SmtpTransport:
    """SMTP with one reused connection per thread; plain, STARTTLS or implicit TLS, with auth."""

    def __init__(self, url: str, timeout: float = 15.0):
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("smtp", "smtps", "smtp+plain"):
            raise ValueError(f"SMTP_URL scheme must be smtp, smtps or smtp+plain, not {parts.scheme!r}")
        self.scheme = parts.scheme
        self.host = parts.hostname or "localhost"
        self.port = parts.port or {"smtps": 465, "smtp": 587, "smtp+plain": 25}[parts.scheme]
        self.username = urllib.parse.unquote(parts.username) if parts.username else None
        self.password = urllib.parse.unquote(parts.password) if parts.password else None
        self.timeout = timeout
        self._local = threading.local()

    def _connect(self) -> smtplib.SMTP:
        context = ssl.create_default_context()
        if self.scheme == "smtps":
            conn: smtplib.SMTP = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=context)
        else:
            conn = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
            if self.scheme == "smtp":
                conn.starttls(context=context)
        if self.username:
            conn.login(self.username, self.password or "")
        return conn

    def _connection(self) -> smtplib.SMTP:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            try:
                if conn.noop()[0] == 250:
                    return conn
            except (smtplib.SMTPException, OSError):
                pass  # a dead connection: open a new one below
        self._local.conn = self._connect()
        return self._local.conn

    def send(self, message: EmailMessage) -> None:
        """Send over this thread's connection, categorising failures."""
        try:
            refused = self._connection().send_message(message)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            self._drop()
            raise (TransientMailError if all(400 <= c < 500 for c in codes) else PermanentMailError)(
                f"recipients refused: {exc.recipients}") from None
        except smtplib.SMTPResponseException as exc:
            self._drop()
            kind = TransientMailError if 400 <= exc.smtp_code < 500 else PermanentMailError
            raise kind(f"SMTP {exc.smtp_code}: {exc.smtp_error!r}") from None
        except (smtplib.SMTPException, OSError) as exc:
            self._drop()
            raise TransientMailError(f"{type(exc).__name__}: {exc}") from None
        if refused:
            raise PermanentMailError(f"some recipients refused: {refused}")

    def _drop(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            try:
                conn.close()
            except OSError:
                pass

    def close(self) -> None:
        """Close this thread's connection."""
        self._drop()


def from_settings(smtp_url: str, outbox_dir: str, timeout: float) -> Transport:
    """SMTP when ``smtp_url`` is set, files otherwise."""
    return SmtpTransport(smtp_url, timeout) if smtp_url else FileTransport(outbox_dir)
