"""B2C QueueTimeOuts followed by Daraja's Transaction Status, against the Daraja sandbox (a real subprocess): the
answer arriving on the merchant's status-result URL becomes one ``mpesa.b2c.resolved`` event, answers that settle
nothing are asked again until the check ends unknown with payhook.transaction.unresolved, Daraja's faults and
outages are waited out, two processes never ask about one transaction twice (counted at the sandbox), and a
merchant without initiator credentials is not followed."""

from __future__ import annotations

import datetime as dt
import json
import threading

import requests
from sqlalchemy import func, select

from payhook_shared.events import webhook_body
from payhook_shared.operational import TRANSACTION_UNRESOLVED
from payhook_shared.priority import Priority
from payhook_shared.store import Delivery, Email, Event, StatusCheck
from payhook_shared.store.models import utcnow
from support import Clock, wait_until
from support_reconcile import INITIATOR, counted, stack  # noqa: F401  (the fixture)


def b2c(s, urls, originator, remarks="SBX0T", amount=1500):
    """A B2C payment at the sandbox whose result goes to the merchant's Payhook URLs (``SBX0T``: a QueueTimeOut)."""
    answer = s.sandbox.call("/mpesa/b2c/v3/paymentrequest", {
        "OriginatorConversationID": originator, "InitiatorName": "testapi", "SecurityCredential": "c2VjcmV0",
        "CommandID": "BusinessPayment", "Amount": amount, "PartyA": 600996, "PartyB": 254712345678,
        "Remarks": remarks, "QueueTimeOutURL": urls["b2c-timeout"], "ResultURL": urls["b2c-result"], "Occassion": ""})
    assert answer.status_code == 200, answer.text
    return answer.json()


def check_of(s, originator) -> StatusCheck | None:
    with s.store.read() as session:
        return session.scalars(select(StatusCheck).where(
            StatusCheck.originator_conversation_id == originator)).one_or_none()


def events_of(s, event_type) -> list[Event]:
    with s.store.read() as session:
        return session.scalars(select(Event).where(Event.type == event_type).order_by(Event.id)).all()


def later(seconds):
    return lambda: utcnow() + dt.timedelta(seconds=seconds)


# An answer comes within 0.1 s (the sandbox's callback delay): a check looks again for it only after 2 s, unless
# the answer's arrival wakes it, so a second query would show a check that did not wait for its answer.
WAIT = {"reconcile_after": 30, "reconcile_backoff": 2, "reconcile_backoff_max": 2}


def test_a_b2c_queue_timeout_is_resolved_once_by_the_answer_on_the_status_result_url(stack):
    s = stack(**WAIT)
    merchant, headers = s.merchant(**INITIATOR)
    urls = s.callback_urls(merchant, headers)
    b2c(s, urls, "ph-paid")
    b2c(s, urls, "ph-refused", remarks="SBX2001T", amount=700)
    wait_until(lambda: check_of(s, "ph-paid") and check_of(s, "ph-refused"), what="the QueueTimeOuts recorded")
    timed_out = {e.id: e for e in events_of(s, "mpesa.b2c")}
    assert {e.status for e in timed_out.values()} == {"unknown"} and check_of(s, "ph-paid").event_id in timed_out
    # Safaricom's QueueTimeOut again: a duplicate, and no second check.
    body = [c["body"] for c in s.sandbox.callbacks() if c["kind"] == "b2c-timeout"][0]
    assert requests.post(urls["b2c-timeout"], json=body, timeout=10).status_code == 200
    with s.store.read() as session:
        assert session.scalar(select(func.count()).select_from(StatusCheck)) == 2

    checks = s.app.extensions["payhook.status_checks"]
    assert checks.tick() == 0, "nothing is asked before RECONCILE_AFTER"
    checks.clock = later(31)
    assert checks.tick() == 2
    wait_until(lambda: checks.tick() is not None and check_of(s, "ph-paid").state == "resolved"
               and check_of(s, "ph-refused").state == "resolved", timeout=1.5, what="both resolved, once answered")

    paid, refused = check_of(s, "ph-paid"), check_of(s, "ph-refused")
    resolutions = {e.id: e for e in events_of(s, "mpesa.b2c.resolved")}
    assert set(resolutions) == {paid.resolution_event_id, refused.resolution_event_id}
    done = resolutions[paid.resolution_event_id]
    assert (done.status, done.amount_minor, done.source, done.phone) == ("succeeded", 150000, "query", "254712345678")
    assert done.details["original_event_id"] == paid.event_id and done.details["TransactionStatus"] == "Completed"
    assert done.dedupe_key == f"resolved:{paid.event_id}" and done.receipt
    [status_event] = [e for e in events_of(s, "mpesa.transaction_status") if e.id == done.details["status_event_id"]]
    assert status_event.provider_ids["OriginatorConversationID"] == paid.query_originator_id
    assert json.loads(done.raw_payload) == json.loads(status_event.raw_payload)
    body = json.loads(webhook_body(done))["data"]
    assert (body["source"], body["status"], body["details"]["original_event_id"]) == ("query", "succeeded",
                                                                                     paid.event_id)
    failed = resolutions[refused.resolution_event_id]
    assert (failed.status, failed.amount_minor, failed.details["TransactionStatus"]) == ("failed", 70000, "Failed")
    assert (paid.status, paid.queries, refused.status, refused.queries) == ("succeeded", 1, "failed", 1)
    with s.store.read() as session:
        priorities = dict(session.execute(select(Delivery.event_id, Delivery.priority).where(
            Delivery.event_id.in_(list(resolutions)))).all())
    # Delivered like any event: a failed payout is urgent.
    assert priorities == {done.id: Priority.NORMAL, failed.id: Priority.URGENT}

    assert s.sandbox.counters()["status_queries"] == {"ph-paid": 1, "ph-refused": 1}
    assert checks.tick() == 0, "a resolved check is not asked again"


def test_answers_that_settle_nothing_are_asked_again_then_end_unknown_with_the_operational_webhook(stack):
    s = stack(**WAIT, reconcile_max_checks=2)
    merchant, headers = s.merchant(event_types=["mpesa.b2c", TRANSACTION_UNRESOLVED], **INITIATOR)
    urls = s.callback_urls(merchant, headers)
    b2c(s, urls, "ph-lost")
    wait_until(lambda: check_of(s, "ph-lost"), what="the QueueTimeOut recorded")
    before = counted("payhook_transactions_unresolved_total", {"type": "mpesa.b2c"})
    no_answer = counted("payhook_status_checks_total", {"outcome": "no_answer"})
    checks = s.app.extensions["payhook.status_checks"]
    checks.clock = later(31)

    s.sandbox.configure(drop_ratio=1.0)  # the first query's answer never comes
    assert checks.tick() == 1 and check_of(s, "ph-lost").queries == 1
    assert checks.tick() == 0, "the answer is waited for"
    s.sandbox.configure(drop_ratio=0.0, outcomes={"2001": 1})  # the second's refuses the initiator
    checks.clock = later(34)
    wait_until(lambda: checks.tick() is not None and check_of(s, "ph-lost").state == "unknown", timeout=10,
               what="the check to end unknown")

    check = check_of(s, "ph-lost")
    assert (check.queries, check.next_check_at, check.resolution_event_id) == (2, None, None)
    assert s.sandbox.counters()["status_queries"] == {"ph-lost": 2}
    assert counted("payhook_status_checks_total", {"outcome": "no_answer"}) - no_answer == 1
    assert counted("payhook_transactions_unresolved_total", {"type": "mpesa.b2c"}) - before == 1
    assert events_of(s, "mpesa.b2c.resolved") == []
    [refusal] = events_of(s, "mpesa.transaction_status")
    assert refusal.result_code == "2001"
    [notice] = events_of(s, TRANSACTION_UNRESOLVED)
    assert (notice.status, notice.source, notice.details["event_id"], notice.details["queries"]) == (
        "unknown", "payhook", check.event_id, 2)
    assert "2001" in notice.details["reason"] and notice.priority == Priority.URGENT
    with s.store.read() as session:
        assert session.scalar(select(func.count()).select_from(Delivery).where(Delivery.event_id == notice.id)) == 1
        [email] = session.scalars(select(Email).where(Email.template == "transaction_unresolved")).all()
    assert email.recipients == ["merchant@example.test"] and email.priority == Priority.URGENT
    assert email.context["originator_conversation_id"] == check.originator_conversation_id
    assert email.context["kind"] == "B2C payment"
    assert checks.tick() == 0


def test_faults_and_an_outage_are_waited_out_and_the_resolution_is_recorded_once(stack):
    s = stack(**WAIT, daraja_read_timeout=0.5)
    merchant, headers = s.merchant(**INITIATOR)
    urls = s.callback_urls(merchant, headers)
    b2c(s, urls, "ph-wait")
    wait_until(lambda: check_of(s, "ph-wait"), what="the QueueTimeOut recorded")
    checks = s.app.extensions["payhook.status_checks"]
    checks.clock = clock = Clock(running=True)
    clock.advance(31)

    def look_later():
        clock.advance(3)  # past the backoff: each look is a new try
        return checks.tick()

    s.sandbox.fault(500, count=2, endpoint="transactionstatus")
    s.sandbox.fault(429, count=1, endpoint="transactionstatus")
    for _ in range(3):
        assert look_later() == 1
    assert s.sandbox.counters()["faults_served"] == 3
    assert (check_of(s, "ph-wait").state, check_of(s, "ph-wait").queries) == ("pending", 0)

    # Down: nothing answers; the check waits. Back (a new process, which forgot the payment): asked and settled.
    s.sandbox.stop()
    for _ in range(3):
        assert look_later() == 1
    assert (check_of(s, "ph-wait").state, check_of(s, "ph-wait").queries, check_of(s, "ph-wait").checks) == (
        "pending", 0, 6)
    s.sandbox.start()
    # The new process refuses the token Payhook cached (it issued none): dropped, and the next look fetches one.
    assert look_later() == 1 and check_of(s, "ph-wait").queries == 0
    assert look_later() == 1 and check_of(s, "ph-wait").queries == 1
    wait_until(lambda: checks.tick() is not None and check_of(s, "ph-wait").state == "resolved", timeout=1.5,
               what="the resolution once the answer comes")
    [resolution] = events_of(s, "mpesa.b2c.resolved")
    assert (resolution.status, resolution.id) == ("succeeded", check_of(s, "ph-wait").resolution_event_id)
    assert s.sandbox.counters()["status_queries"] == {"ph-wait": 1}


def test_two_processes_ask_about_each_timeout_once(stack):
    s = stack(**WAIT, daraja_rate_limit=1000)
    merchant, headers = s.merchant(**INITIATOR)
    urls = s.callback_urls(merchant, headers)
    originators = [f"ph-{i}" for i in range(6)]
    for originator in originators:
        b2c(s, urls, originator)
    wait_until(lambda: all(check_of(s, o) for o in originators), what="the QueueTimeOuts recorded")
    tokens = s.sandbox.counters()["tokens_issued"]  # the test's own, for its B2C requests
    replica = s.another_process()
    workers = [s.app.extensions["payhook.status_checks"], replica.extensions["payhook.status_checks"]]
    for worker in workers:
        worker.clock = later(31)

    def run(index):
        wait_until(lambda: workers[index].tick() is not None
                   and all(check_of(s, o).state == "resolved" for o in originators), timeout=15, interval=0.01,
                   what="every check resolved")

    threads = [threading.Thread(target=run, args=(i,)) for i in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    try:
        assert all(check_of(s, o).state == "resolved" and check_of(s, o).queries == 1 for o in originators)
        assert s.sandbox.counters()["status_queries"] == {o: 1 for o in originators}
        assert len(events_of(s, "mpesa.b2c.resolved")) == len(originators)
        # Twelve claims from two processes: one OAuth token for them all.
        assert s.sandbox.counters()["tokens_issued"] - tokens == 1
    finally:
        replica.extensions["payhook.store"].dispose()


def test_a_merchant_without_initiator_credentials_is_not_followed(stack):
    s = stack(reconcile_after=30)
    merchant, headers = s.merchant()
    b2c(s, s.callback_urls(merchant, headers), "ph-plain")
    wait_until(lambda: check_of(s, "ph-plain"), what="the QueueTimeOut recorded")
    checks = s.app.extensions["payhook.status_checks"]
    checks.clock = later(31)
    assert checks.tick() == 1
    assert (check_of(s, "ph-plain").state, check_of(s, "ph-plain").queries) == ("skipped", 0)
    assert "transactionstatus" not in s.sandbox.counters()["requests"]
    assert checks.tick() == 0
