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
    """Where a rendered message goes; chosen by ``from_settings``."""

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
    """SMTP with one reused connection per thread; plain, STARTTLS or implicit TLS, with auth.

    ``smtp+plain://`` sends in clear, ``smtp://`` requires STARTTLS, ``smtps://``
    speaks TLS from the first byte. Certificates and host names are always
    verified, against ``ca_file`` when given, otherwise the system's CAs.
    """

    def __init__(self, url: str, timeout: float = 15.0, ca_file: str | None = None):
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("smtp", "smtps", "smtp+plain"):
            raise ValueError(f"SMTP_URL scheme must be smtp, smtps or smtp+plain, not {parts.scheme!r}")
        self.scheme = parts.scheme
        self.host = parts.hostname or "localhost"
        self.port = parts.port or {"smtps": 465, "smtp": 587, "smtp+plain": 25}[parts.scheme]
        self.username = urllib.parse.unquote(parts.username) if parts.username else None
        self.password = urllib.parse.unquote(parts.password) if parts.password else None
        self.timeout = timeout
        self.ca_file = ca_file or None
        self._local = threading.local()
        self._lock = threading.Lock()
        self._open: set[smtplib.SMTP] = set()

    def _connect(self) -> smtplib.SMTP:
        context = ssl.create_default_context(cafile=self.ca_file)
        if self.scheme == "smtps":
            conn: smtplib.SMTP = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=context)
        else:
            conn = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        try:
            if self.scheme == "smtp":
                conn.starttls(context=context)
            if self.username:
                conn.login(self.username, self.password or "")
        except BaseException:
            conn.close()
            raise
        with self._lock:
            self._open.add(conn)
        return conn

    def _connection(self) -> smtplib.SMTP:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            try:
                if conn.noop()[0] == 250:
                    return conn
            except (smtplib.SMTPException, OSError):
                pass  # the server closed an idle connection: open a new one below
            self._drop()
        self._local.conn = self._connect()
        return self._local.conn

    def send(self, message: EmailMessage) -> None:
        """Send over this thread's connection, categorising failures."""
        try:
            refused = self._connection().send_message(message)
        except smtplib.SMTPAuthenticationError as exc:
            # Wrong credentials are the operator's to fix, not this email's fault: keep it for later.
            self._drop()
            raise TransientMailError(f"SMTP authentication failed: {exc.smtp_code}") from None
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            self._drop()
            raise (TransientMailError if all(400 <= c < 500 for c in codes) else PermanentMailError)(
                f"recipients refused: {_describe(exc.recipients)}") from None
        except smtplib.SMTPResponseException as exc:
            self._drop()
            kind = TransientMailError if 400 <= exc.smtp_code < 500 else PermanentMailError
            raise kind(f"SMTP {exc.smtp_code}: {_text(exc.smtp_error)}") from None
        except (smtplib.SMTPException, OSError) as exc:
            self._drop()
            raise TransientMailError(f"{type(exc).__name__}: {exc}") from None
        if refused:
            raise PermanentMailError(f"some recipients refused: {_describe(refused)}")

    def _drop(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            _quietly_close(conn)
            with self._lock:
                self._open.discard(conn)

    def close(self) -> None:
        """Close every thread's connection."""
        with self._lock:
            conns, self._open = self._open, set()
        for conn in conns:
            _quietly_close(conn)
        self._local = threading.local()


def _text(reply: bytes | str) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)


def _describe(recipients: dict[str, tuple[int, bytes]]) -> str:
    return "; ".join(f"{addr}: {code} {_text(reply)}" for addr, (code, reply) in recipients.items())


def _quietly_close(conn: smtplib.SMTP) -> None:
    try:
        conn.close()
    except OSError:
        pass  # already gone; nothing left to release


class _Settings(Protocol):
    smtp_url: str
    smtp_ca_file: str
    smtp_timeout: float
    outbox_dir: str


def from_settings(settings: _Settings) -> Transport:
    """SMTP when ``SMTP_URL`` is set, ``.eml`` files in ``OUTBOX_DIR`` otherwise."""
    if settings.smtp_url:
        return SmtpTransport(settings.smtp_url, settings.smtp_timeout, settings.smtp_ca_file or None)
    return FileTransport(settings.outbox_dir)
