"""The mail worker against a real SMTP server and the file outbox."""

from __future__ import annotations

from email import message_from_bytes

from sqlalchemy import select

from factories import fixture_bytes, merchant_with_endpoints, stk_url
from payhook_shared.store import Email, JobState
from support import wait_until


def email_row(store) -> Email:
    with store.read() as session:
        return session.scalars(select(Email)).one()


def test_payment_notice_goes_out_over_smtp_with_both_parts(client, store, smtp_server, mail_worker):
    merchant, _ = merchant_with_endpoints(store, "http://127.0.0.1:9/x", email="owner@shop.test")
    mail_worker(smtp_url=smtp_server.url)
    client.post(stk_url(merchant), data=fixture_bytes("mpesa/stk_success.json"), content_type="application/json")
    wait_until(lambda: smtp_server.messages, what="an email")
    _, recipients, mail = smtp_server.messages[0]
    assert recipients == ["owner@shop.test"]
    assert mail["Subject"] == "Payment received: KES 1.00 (NLJ7RT61SV)"
    assert mail["Message-ID"] == f"<{email_row(store).id}@payhook.local>"
    parts = {part.get_content_type(): part.get_payload(decode=True).decode() for part in mail.walk()
             if not part.is_multipart()}
    assert set(parts) == {"text/plain", "text/html"}
    assert "254708***149" in parts["text/plain"] and "254708374149" not in parts["text/plain"]
    wait_until(lambda: email_row(store).state == JobState.DONE.value, what="email marked sent")


def test_without_smtp_the_email_is_written_to_the_outbox(client, store, mail_worker, tmp_path):
    merchant, _ = merchant_with_endpoints(store, "http://127.0.0.1:9/x")
    mail_worker(outbox_dir=str(tmp_path / "outbox"))
    client.post(stk_url(merchant), data=fixture_bytes("mpesa/stk_success.json"), content_type="application/json")
    files = wait_until(lambda: list((tmp_path / "outbox").glob("*.eml")), what="an .eml file")
    mail = message_from_bytes(files[0].read_bytes())
    assert mail["To"] == "merchant@example.test"
    assert mail["Subject"].startswith("Payment received")
