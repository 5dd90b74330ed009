"""Every kind of email, built by its shared builder and sent by the mail worker over real SMTP."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from factories import merchant_with_endpoints, record_payment
from payhook_shared import notices, operational
from payhook_shared.broker import create_broker
from payhook_shared.store import Email, JobState, Merchant
from support import wait_until

SUCCESS, CANCELLED = "mpesa/stk_success.json", "mpesa/stk_cancelled_1032.json"


def parts(mail) -> dict[str, str]:
    return {p.get_content_type(): p.get_payload(decode=True).decode() for p in mail.walk() if not p.is_multipart()}


def sent_to(smtp_server, address: str):
    return next(m for _, rcpt, m in smtp_server.messages if address in rcpt)


def emails(store) -> dict[str, Email]:
    with store.read() as session:
        return {e.template: e for e in session.scalars(select(Email))}


def test_payment_sends_merchant_notice_and_buyer_receipt(store, smtp_server, mail_worker):
    merchant, _ = merchant_with_endpoints(store, email="owner@shop.test")
    with store.write() as session:
        session.get(Merchant, merchant.id).settings = {
            "notifications": {"payment_received": {"recipients": ["owner@shop.test", "books@shop.test"]}}}
    rt = mail_worker(smtp_url=smtp_server.url)
    record_payment(store, rt.broker, merchant.id, SUCCESS, customer_email="buyer@mail.test")
    wait_until(lambda: len(smtp_server.messages) == 2, what="notice and receipt")

    rows = emails(store)
    assert set(rows) == {"payment_received", "receipt"}
    notice, receipt = sent_to(smtp_server, "books@shop.test"), sent_to(smtp_server, "buyer@mail.test")
    assert [rcpt for _, rcpt, m in smtp_server.messages if m is notice] == [["owner@shop.test", "books@shop.test"]]
    assert [rcpt for _, rcpt, m in smtp_server.messages if m is receipt] == [["buyer@mail.test"]]
    assert notice["Subject"] == "Payment received: KES 1.00 (NLJ7RT61SV)"
    assert receipt["Subject"] == "Your receipt from Test Shop: KES 1.00"
    assert notice["Message-ID"] == f"<{rows['payment_received'].id}@payhook.local>"
    assert receipt["Message-ID"] == f"<{rows['receipt'].id}@payhook.local>"
    for mail in (notice, receipt):
        body = parts(mail)
        assert set(body) == {"text/plain", "text/html"}
        for part in body.values():
            assert "KES 1.00" in part and "NLJ7RT61SV" in part
            assert "254708***149" in part and "254708374149" not in part
        assert "max-width:520px" in body["text/html"]
    assert "owner@shop.test" in parts(receipt)["text/plain"]  # where the buyer can ask
    assert rows["receipt"].priority == rows["payment_received"].priority == 2  # NORMAL
    wait_until(lambda: all(e.state == JobState.DONE.value for e in emails(store).values()), what="both sent")


def test_payment_failed_notice_is_opt_in(store, smtp_server, mail_worker):
    quiet, _ = merchant_with_endpoints(store, email="quiet@shop.test")
    keen, _ = merchant_with_endpoints(store, email="keen@shop.test")
    with store.write() as session:
        session.get(Merchant, keen.id).settings = {"notifications": {"payment_failed": {"enabled": True}}}
    rt = mail_worker(smtp_url=smtp_server.url)
    record_payment(store, rt.broker, quiet.id, CANCELLED, customer_email="buyer@mail.test")
    record_payment(store, rt.broker, keen.id, CANCELLED, customer_email="buyer@mail.test")
    wait_until(lambda: smtp_server.messages, what="the failure notice")

    [(_, recipients, mail)] = smtp_server.messages
    assert recipients == ["keen@shop.test"]  # no receipt for a failed payment, no notice for the quiet one
    assert mail["Subject"] == "Payment failed (Request cancelled by user)"
    body = parts(mail)
    assert set(body) == {"text/plain", "text/html"}
    assert "ws_CO_21072024125243250722943992" in body["text/plain"]
    assert emails(store)["payment_failed"].priority == 1  # HIGH


def test_merchant_can_turn_notices_off(store, redis_url):
    broker = create_broker(redis_url)
    merchant, _ = merchant_with_endpoints(store)
    with store.write() as session:
        session.get(Merchant, merchant.id).settings = {
            "notifications": {"payment_received": {"enabled": False}, "receipt": {"enabled": False}}}
    record_payment(store, broker, merchant.id, SUCCESS, customer_email="buyer@mail.test")
    broker.close()
    assert emails(store) == {}


def _endpoint_failing(merchant, endpoint):
    started = dt.datetime(2024, 5, 1, 9, 30, tzinfo=dt.timezone.utc)
    return notices.endpoint_failing(merchant, endpoint, incident_started_at=started, failures=7,
                                    last_error="HTTP 503 from receiver")


def _endpoint_disabled(merchant, endpoint):
    disabled = dt.datetime(2024, 5, 2, 8, 0, tzinfo=dt.timezone.utc)
    return notices.endpoint_disabled(merchant, endpoint, disabled_at=disabled,
                                     reason="failing for 5 days")


def _operator_alert(merchant, endpoint):
    return notices.operator_alert(["ops@payhook.test"], alert="dead_letters",
                                  summary="42 dead deliveries (threshold 10)",
                                  figures={"dead deliveries": 42, "threshold": 10}, window="2024-05-01T10")


def _payment_unresolved(merchant, endpoint):
    event = operational.payment_unresolved(
        intent_id="pin_0123", checkout_request_id="ws_CO_0305202409300001", account_reference="INV-1042",
        amount_minor=10000, created_at=dt.datetime(2024, 5, 1, 9, 30, tzinfo=dt.timezone.utc), checks=6,
        reason="Daraja stk_query: The transaction is being processed (500.001.1001)",
        at=dt.datetime(2024, 5, 2, 9, 30, tzinfo=dt.timezone.utc))
    return notices.payment_unresolved(merchant, event, None)


def _transaction_unresolved(merchant, endpoint):
    event = operational.transaction_unresolved(
        check_id="stc_0123", event_id="evt_0123", event_type="mpesa.b2c",
        originator_conversation_id="AG_20240501_00004e1f2a3b", timed_out_at=dt.datetime(2024, 5, 1, 9, 30,
                                                                                          tzinfo=dt.timezone.utc),
        queries=4, reason="Daraja transaction_status: no final result", at=dt.datetime(2024, 5, 1, 12, 0,
                                                                                         tzinfo=dt.timezone.utc))
    return notices.transaction_unresolved(merchant, event, None)


CASES = {
    "endpoint_failing": (_endpoint_failing, ["alerts@shop.test"],
                         "Webhook endpoint failing: https://hooks.shop.test/payhook",
                         ["2024-05-01 09:30 UTC", "HTTP 503 from receiver", "7"], 1),
    "endpoint_disabled": (_endpoint_disabled, ["alerts@shop.test"],
                          "Webhook endpoint disabled: https://hooks.shop.test/payhook",
                          ["failing for 5 days", "2024-05-02 08:00 UTC"], 0),
    "payment_unresolved": (_payment_unresolved, ["alerts@shop.test"], "Payment unresolved: KES 100.00 (INV-1042)",
                           ["ws_CO_0305202409300001", "INV-1042", "2024-05-01T09:30:00Z", "500.001.1001", "6"], 0),
    "transaction_unresolved": (_transaction_unresolved, ["alerts@shop.test"],
                               "B2C payment unresolved: AG_20240501_00004e1f2a3b",
                               ["AG_20240501_00004e1f2a3b", "2024-05-01T09:30:00Z", "no final result", "4"], 0),
    "operator_alert": (_operator_alert, ["ops@payhook.test"], "[Payhook alert] 42 dead deliveries (threshold 10)",
                       ["dead deliveries", "42", "2024-05-01T10"], 0),
}


@pytest.mark.parametrize("kind", sorted(CASES))
def test_alert_emails_go_out_over_smtp(kind, store, smtp_server, mail_worker):
    build, recipients, subject, snippets, priority = CASES[kind]
    merchant, [endpoint] = merchant_with_endpoints(
        store, "https://hook:s3cret@hooks.shop.test/payhook?token=t0psecret", email="alerts@shop.test")
    rt = mail_worker(smtp_url=smtp_server.url)
    email = build(merchant, endpoint)
    assert email.priority == priority
    with store.write() as session:
        message = notices.stage(session, email)
    assert message.queue_name == f"mail.{['urgent', 'high'][priority]}"
    rt.broker.enqueue(message)
    wait_until(lambda: smtp_server.messages, what=f"the {kind} email")

    [(_, rcpt, mail)] = smtp_server.messages
    assert rcpt == recipients
    assert mail["Subject"] == subject
    assert mail["Message-ID"] == f"<{email.id}@payhook.local>"
    body = parts(mail)
    assert set(body) == {"text/plain", "text/html"}
    for part in body.values():
        assert "s3cret" not in part and "t0psecret" not in part
        for snippet in snippets:
            assert snippet in part


def test_a_notice_is_staged_once_per_dedupe_key(store, redis_client):
    merchant, [endpoint] = merchant_with_endpoints(store, "https://hooks.shop.test/a")
    with store.write() as session:
        assert notices.stage(session, _endpoint_failing(merchant, endpoint)) is not None
    with store.write() as session:
        assert notices.stage(session, _endpoint_failing(merchant, endpoint)) is None
    assert len(emails(store)) == 1
