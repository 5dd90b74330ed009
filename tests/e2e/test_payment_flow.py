"""One M-Pesa payment from callback to a verified webhook and an email, all real parts."""

from __future__ import annotations

import json

from sqlalchemy import func, select
from standardwebhooks.webhooks import Webhook

from factories import fixture_bytes, fixture_json, merchant_with_endpoints, set_merchant_settings, stk_url
from payhook_shared.store import Delivery, DeliveryAttempt, Email, Event, JobState
from support import wait_until


def test_stk_payment_reaches_merchant_signed_and_mailed(client, store, receiver, smtp_server,
                                                         delivery_worker, mail_worker):
    merchant, [endpoint] = merchant_with_endpoints(store, receiver.url)
    delivery_worker()
    mail_worker(smtp_url=smtp_server.url)

    response = client.post(stk_url(merchant), data=fixture_bytes("mpesa/stk_success.json"),
                           content_type="application/json")
    assert response.status_code == 200
    assert response.get_json() == {"ResultCode": 0, "ResultDesc": "Accepted"}

    [webhook] = receiver.wait_for(1)
    # Verified independently, with the standardwebhooks package.
    payload = Webhook(endpoint.secret).verify(webhook.body, webhook.headers)
    assert payload["type"] == "mpesa.stk_push"
    assert payload["data"]["status"] == "succeeded"
    assert payload["data"]["amount"] == "1.00" and payload["data"]["currency"] == "KES"
    assert payload["data"]["receipt"] == "NLJ7RT61SV"
    assert payload["data"]["raw"] == json.loads(fixture_bytes("mpesa/stk_success.json"))
    assert webhook.headers["webhook-id"] == payload["id"]

    wait_until(lambda: smtp_server.messages, what="the merchant's email")
    sender, recipients, mail = smtp_server.messages[0]
    assert recipients == ["merchant@example.test"]
    assert "KES 1.00" in mail["Subject"]
    assert mail["Message-ID"].startswith("<eml_")

    def settled():
        with store.read() as session:
            return (session.scalar(select(Delivery.state)) == JobState.DONE.value
                    and session.scalar(select(Email.state)) == JobState.DONE.value)
    wait_until(settled, what="delivery and email recorded as done")
    with store.read() as session:
        assert session.scalar(select(func.count()).select_from(Event)) == 1
        attempt = session.scalars(select(DeliveryAttempt)).one()
        assert (attempt.status_code, attempt.category, attempt.number) == (200, "success", 1)
    # Exactly one webhook, even after the sweeper has had time to look again.
    wait_until(lambda: len(receiver.received) == 1, timeout=1)
    assert len(receiver.received) == 1


def test_crlf_in_a_receipt_number_leaves_each_subject_one_clean_line(client, store, smtp_server, mail_worker):
    merchant, _ = merchant_with_endpoints(store, "https://shop.example/hook")
    set_merchant_settings(store, merchant, {"notifications": {"receipt": {"fallback_email": "buyer@shop.test"}}})
    mail_worker(smtp_url=smtp_server.url)
    body = fixture_json("mpesa/stk_success.json")
    body["Body"]["stkCallback"]["CallbackMetadata"]["Item"][1]["Value"] = "NLJ7RT61SV\r\nBcc: thief@evil.test"

    assert client.post(stk_url(merchant), json=body).status_code == 200

    wait_until(lambda: len(smtp_server.messages) == 2, what="the merchant's email and the buyer's receipt")
    sent = {tuple(recipients): mail for _, recipients, mail in smtp_server.messages}
    assert set(sent) == {("merchant@example.test",), ("buyer@shop.test",)}
    assert sent[("merchant@example.test",)]["Subject"] == \
        "Payment received: KES 1.00 (NLJ7RT61SV Bcc: thief@evil.test)"
    assert sent[("buyer@shop.test",)]["Subject"] == "Your receipt from Test Shop: KES 1.00"
    for mail in sent.values():
        assert "\n" not in mail["Subject"] and "\r" not in mail["Subject"]
        assert mail["Bcc"] is None

    def states() -> set[str]:
        with store.read() as session:
            return set(session.scalars(select(Email.state)))
    # The worker marks an email done once the SMTP server has answered, so the test may see the mail first.
    wait_until(lambda: states() == {JobState.DONE.value}, what="both emails recorded as done")
