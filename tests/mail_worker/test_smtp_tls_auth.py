"""SmtpTransport against real aiosmtpd servers: STARTTLS, implicit TLS, AUTH and connection reuse.

The servers use a self-signed certificate made at test time with the ``openssl``
CLI; the transport trusts it through its CA-file setting, never by turning
verification off.
"""

from __future__ import annotations

import datetime as dt
import shutil
import ssl
import subprocess
from email import message_from_bytes
from email.message import EmailMessage

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from sqlalchemy import select

from factories import merchant_with_endpoints
from payhook_mail.errors import TransientMailError
from payhook_mail.transport import SmtpTransport
from payhook_shared import notices
from payhook_shared.store import Email, JobState
from support import free_port, wait_until

# The implicit-TLS server is encrypted, though aiosmtpd warns as if it were not (see tls_server).
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")

USER, PASSWORD = "payhook", "p@ss:word"
URL_PASSWORD = "p%40ss%3Aword"


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    """A self-signed certificate for 127.0.0.1 and localhost: (cert file, key file)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl CLI is needed to make a test certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True)
    return cert, key


class Inbox:
    """Keeps each message with the id of the SMTP session that carried it."""

    def __init__(self):
        self.messages: list[tuple[int, list[str], object]] = []
        self.logins: list[str] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's naming)
        self.messages.append((id(session), list(envelope.rcpt_tos), message_from_bytes(envelope.content)))
        return "250 OK"

    def authenticate(self, server, session, envelope, mechanism, auth_data):
        ok = auth_data.login.decode() == USER and auth_data.password.decode() == PASSWORD
        if ok:
            self.logins.append(auth_data.login.decode())
        # handled=False: aiosmtpd itself answers a refusal with 535.
        return AuthResult(success=ok, handled=False)


def server_context(certificate) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*map(str, certificate))
    return context


@pytest.fixture
def starttls_server(certificate):
    """Requires STARTTLS before anything, and AUTH before mail."""
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port(),
                            tls_context=server_context(certificate), require_starttls=True,
                            authenticator=inbox.authenticate, auth_required=True, auth_require_tls=True)
    controller.start()
    inbox.port = controller.port
    yield inbox
    controller.stop()


@pytest.fixture
def tls_server(certificate):
    """Speaks TLS from the first byte (smtps), with AUTH."""
    inbox = Inbox()
    # aiosmtpd cannot tell that an implicit-TLS session is encrypted, so it must be told not to insist.
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port(),
                            ssl_context=server_context(certificate),
                            authenticator=inbox.authenticate, auth_required=True, auth_require_tls=False)
    controller.start()
    inbox.port = controller.port
    yield inbox
    controller.stop()


def message(n: int) -> EmailMessage:
    mail = EmailMessage()
    mail["From"], mail["To"], mail["Subject"] = "no-reply@payhook.test", "owner@shop.test", f"test {n}"
    mail["Message-ID"] = f"<eml_{n}@payhook.test>"
    mail.set_content(f"message {n}")
    return mail


def test_starttls_with_auth_reuses_one_connection(starttls_server, certificate):
    transport = SmtpTransport(f"smtp://{USER}:{URL_PASSWORD}@127.0.0.1:{starttls_server.port}",
                              timeout=5, ca_file=str(certificate[0]))
    try:
        for n in range(3):
            transport.send(message(n))
    finally:
        transport.close()
    assert [m["Subject"] for _, _, m in starttls_server.messages] == ["test 0", "test 1", "test 2"]
    assert len({session for session, _, _ in starttls_server.messages}) == 1
    assert starttls_server.logins == [USER]


def test_implicit_tls_with_auth(tls_server, certificate):
    transport = SmtpTransport(f"smtps://{USER}:{URL_PASSWORD}@127.0.0.1:{tls_server.port}",
                              timeout=5, ca_file=str(certificate[0]))
    try:
        transport.send(message(1))
    finally:
        transport.close()
    [(_, recipients, mail)] = tls_server.messages
    assert recipients == ["owner@shop.test"] and mail["Message-ID"] == "<eml_1@payhook.test>"


def test_an_untrusted_certificate_is_refused(tls_server):
    transport = SmtpTransport(f"smtps://{USER}:{URL_PASSWORD}@127.0.0.1:{tls_server.port}", timeout=5)
    with pytest.raises(TransientMailError, match="CERTIFICATE_VERIFY_FAILED"):
        transport.send(message(1))
    assert tls_server.messages == []


def test_wrong_password_is_a_transient_failure(starttls_server, certificate):
    transport = SmtpTransport(f"smtp://{USER}:nope@127.0.0.1:{starttls_server.port}",
                              timeout=5, ca_file=str(certificate[0]))
    with pytest.raises(TransientMailError, match="authentication failed: 535"):
        transport.send(message(1))
    assert starttls_server.messages == []


def test_mail_worker_sends_over_starttls_from_settings(starttls_server, certificate, store, mail_worker):
    merchant, [endpoint] = merchant_with_endpoints(store, "https://hooks.shop.test/a", email="owner@shop.test")
    rt = mail_worker(smtp_url=f"smtp://{USER}:{URL_PASSWORD}@127.0.0.1:{starttls_server.port}",
                     smtp_ca_file=str(certificate[0]))
    email = notices.endpoint_disabled(merchant, endpoint, disabled_at=dt.datetime.now(dt.timezone.utc),
                                      reason="failing for 5 days")
    with store.write() as session:
        rt.broker.enqueue(notices.stage(session, email))
    wait_until(lambda: starttls_server.messages, what="the email over STARTTLS")
    [(_, recipients, mail)] = starttls_server.messages
    assert recipients == ["owner@shop.test"] and mail["Message-ID"] == f"<{email.id}@payhook.local>"

    def sent():
        with store.read() as session:
            return session.scalars(select(Email)).one().state == JobState.DONE.value
    wait_until(sent, what="the email recorded as sent")
