"""Temporary SMTP failures are retried without duplicates; permanent ones are dead-lettered at once."""

from __future__ import annotations

import json
import urllib.parse
from email import message_from_bytes

from sqlalchemy import select

from factories import fixture_bytes, merchant_with_endpoints, record_payment
from payhook_shared import notices
from payhook_shared.store import Email, JobState, Merchant
from support import wait_until

FAST_RETRIES = {"retry_schedule": (0.2, 0.2), "retry_jitter": 0}


def only_email(store) -> Email:
    with store.read() as session:
        return session.scalars(select(Email)).one()


def queue_alert(store, broker, recipients=("ops@payhook.test",)) -> Email:
    email = notices.operator_alert(list(recipients), alert="dead_letters", summary="11 dead deliveries",
                                   figures={"dead deliveries": 11}, window="2024-05-01T10")
    with store.write() as session:
        message = notices.stage(session, email)
    broker.enqueue(message)
    return email


def test_451_twice_then_accepted_arrives_exactly_once(store, smtp_server, mail_worker):
    smtp_server.script[:] = ["451 4.3.0 try later", "451 4.3.0 try later"]
    rt = mail_worker(smtp_url=smtp_server.url, **FAST_RETRIES)
    email = queue_alert(store, rt.broker)
    wait_until(lambda: only_email(store).state == JobState.DONE.value, what="the email sent after two 451s")
    assert [rt.sweeper.run_once() for _ in range(3)] == [0, 0, 0]  # sweeps find nothing to resend
    row = only_email(store)
    assert (row.state, row.attempts, row.last_error) == (JobState.DONE.value, 3, None)
    assert smtp_server.script == []
    [(_, _, mail)] = smtp_server.messages
    assert mail["Message-ID"] == f"<{email.id}@payhook.local>"


def test_550_is_dead_lettered_with_the_reason(store, smtp_server, mail_worker):
    smtp_server.script[:] = ["550 5.1.1 mailbox unavailable", "550 5.1.1 mailbox unavailable"]
    rt = mail_worker(smtp_url=smtp_server.url, **FAST_RETRIES)
    queue_alert(store, rt.broker)
    wait_until(lambda: only_email(store).state == JobState.DEAD.value, what="the email dead-lettered")
    assert [rt.sweeper.run_once() for _ in range(3)] == [0, 0, 0]
    row = only_email(store)
    assert row.attempts == 1
    assert "550" in row.last_error and "mailbox unavailable" in row.last_error
    assert len(smtp_server.script) == 1 and smtp_server.messages == []


def test_invalid_address_is_dead_lettered_without_a_connection(store, smtp_server, mail_worker):
    rt = mail_worker(smtp_url=smtp_server.url, **FAST_RETRIES)
    queue_alert(store, rt.broker, recipients=("not an address",))
    wait_until(lambda: only_email(store).state == JobState.DEAD.value, what="the email dead-lettered")
    assert only_email(store).last_error == "invalid address: 'not an address'"
    assert smtp_server.messages == []


def test_unreachable_server_is_retried_then_dead(store, mail_worker):
    rt = mail_worker(smtp_url="smtp+plain://127.0.0.1:9", smtp_timeout=2, **FAST_RETRIES)
    queue_alert(store, rt.broker)
    wait_until(lambda: only_email(store).state == JobState.DEAD.value, what="retries exhausted")
    row = only_email(store)
    assert row.attempts == 3 and "ConnectionRefusedError" in row.last_error


def outbox(tmp_path) -> dict[str, object]:
    return {message_from_bytes(f.read_bytes())["To"]: message_from_bytes(f.read_bytes())
            for f in (tmp_path / "outbox").glob("*.eml")}


def test_without_configuration_receipt_and_notice_land_in_the_outbox(store, mail_worker, tmp_path):
    merchant, _ = merchant_with_endpoints(store, email="owner@shop.test")
    rt = mail_worker()
    assert type(rt.transport).__name__ == "FileTransport"
    record_payment(store, rt.broker, merchant.id, "mpesa/stk_success.json", customer_email="buyer@mail.test")
    mails = wait_until(lambda: len(outbox(tmp_path)) == 2 and outbox(tmp_path), what="two .eml files")
    assert mails["owner@shop.test"]["Subject"] == "Payment received: KES 1.00 (NLJ7RT61SV)"
    assert mails["buyer@mail.test"]["Subject"] == "Your receipt from Test Shop: KES 1.00"
    for mail in mails.values():
        assert {p.get_content_type() for p in mail.walk() if not p.is_multipart()} == {"text/plain", "text/html"}


def test_demo_merchant_gets_a_receipt_and_a_notice(webhook_app, client, mail_worker, tmp_path):
    result = webhook_app.test_cli_runner().invoke(args=[
        "seed-demo", "--receiver-url", "http://127.0.0.1:9/webhooks", "--out", str(tmp_path / "demo.json")])
    assert result.exit_code == 0, result.output
    stk = json.loads((tmp_path / "demo.json").read_text())["callback_urls"]["stk"]
    mail_worker()
    response = client.post(urllib.parse.urlsplit(stk).path, data=fixture_bytes("mpesa/stk_success.json"),
                           content_type="application/json")
    assert response.status_code == 200
    mails = wait_until(lambda: len(outbox(tmp_path)) == 2 and outbox(tmp_path), what="two .eml files")
    assert set(mails) == {"merchant@demo.payhook.test", "customer@demo.payhook.test"}
    assert mails["customer@demo.payhook.test"]["Subject"] == "Your receipt from Demo Shop: KES 1.00"


def test_seed_demo_keeps_the_merchants_other_settings(webhook_app, store, tmp_path):
    runner = webhook_app.test_cli_runner()
    args = ["seed-demo", "--receiver-url", "http://127.0.0.1:9/webhooks", "--out", str(tmp_path / "demo.json")]
    assert runner.invoke(args=args).exit_code == 0
    with store.write() as session:
        merchant = session.scalars(select(Merchant)).one()
        merchant.settings = {"notifications": {"payment_failed": {"enabled": True}}, "other": 1}
    assert runner.invoke(args=[*args, "--customer-email", "b@demo.test"]).exit_code == 0
    with store.read() as session:
        assert session.scalars(select(Merchant)).one().settings == {
            "notifications": {"payment_failed": {"enabled": True}, "receipt": {"fallback_email": "b@demo.test"}},
            "other": 1}
