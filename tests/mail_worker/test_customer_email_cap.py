"""A merchant's customer emails are capped per hour; what the cap holds back is recorded, never dropped."""

from __future__ import annotations

from prometheus_client import REGISTRY
from sqlalchemy import select

from factories import api_key, merchant_with_endpoints
from payhook_shared.store import Email, JobState
from support import wait_until

CAP = 2
FINISHED = {JobState.DONE.value, JobState.DEAD.value, JobState.SUPPRESSED.value}


def _suppressed_metric() -> float:
    return REGISTRY.get_sample_value("payhook_emails_suppressed_total", {"template": "receipt"}) or 0.0


def _pay(client, headers, n: int) -> None:
    response = client.post("/v1/events", headers=headers, json={
        "type": "shop.payment", "idempotency_key": f"order-{n}", "customer_email": f"buyer{n}@shop.test",
        "data": {"status": "succeeded", "amount": "10.00", "currency": "KES"}})
    assert response.status_code == 201, response.get_json()


def _emails(store, merchant_id: str) -> list[Email]:
    with store.read() as session:
        return list(session.scalars(select(Email).where(Email.merchant_id == merchant_id)))


def test_receipts_past_the_cap_are_suppressed_and_counted_others_go_out(client, store, smtp_server, mail_worker):
    flooding, _ = merchant_with_endpoints(store, "https://shop.example/a", email="owner@shop.test")
    other, _ = merchant_with_endpoints(store, "https://other.example/a", email="owner@other.test")
    before = _suppressed_metric()
    mail_worker(smtp_url=smtp_server.url, customer_emails_per_hour=CAP)

    headers = api_key(store, flooding.id)
    for n in range(5):
        _pay(client, headers, n)
    _pay(client, api_key(store, other.id), 99)

    wait_until(lambda: all(e.state in FINISHED for e in _emails(store, flooding.id) + _emails(store, other.id))
               and len(_emails(store, flooding.id)) == 10, timeout=30, what="every email handled")
    receipts = [e for e in _emails(store, flooding.id) if e.template == "receipt"]
    assert sorted(e.state for e in receipts) == ["done"] * CAP + ["suppressed"] * (5 - CAP)
    for email in receipts:
        if email.state == JobState.SUPPRESSED.value:
            assert email.sent_at is None and f"cap of {CAP} customer emails per hour" in email.last_error
    # The merchant's own notices are not customer emails, and another merchant's receipts have their own room.
    notices = [e for e in _emails(store, flooding.id) if e.template == "payment_received"]
    assert [e.state for e in notices] == ["done"] * 5
    assert {e.state for e in _emails(store, other.id)} == {"done"}

    wait_until(lambda: len(smtp_server.messages) == 5 + CAP + 2, what="the messages at the SMTP server")
    buyers = sorted(r for _, recipients, _ in smtp_server.messages for r in recipients if r.startswith("buyer"))
    assert len(buyers) == CAP + 1 and "buyer99@shop.test" in buyers
    assert _suppressed_metric() - before == 5 - CAP
