"""Reconciliation of STK Pushes whose callback never came, against the Daraja sandbox (a real subprocess):
the query's answer becomes the STK event, a late callback is a duplicate, Daraja's faults and outages are
waited out, "still processing" ends unknown with payhook.payment.unresolved, and two reconcilers never
query one intent at once (counted at the sandbox)."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import threading

from sqlalchemy import select, update

from payhook_shared.events import webhook_body
from payhook_shared.operational import PAYMENT_UNRESOLVED
from payhook_shared.priority import Priority
from payhook_shared.store import Delivery, Email, Event, PaymentIntent
from payhook_shared.store.models import utcnow
from support import wait_until
from support_reconcile import counted, stack  # noqa: F401  (the fixture)


def test_a_dropped_callback_is_settled_by_query_and_its_late_callback_changes_nothing(stack):
    s = stack(reconcile_after=30)
    merchant, headers = s.merchant()
    paid = s.push(headers, "a", "SBX0D", amount=250)
    cancelled = s.push(headers, "b", "SBX1032D")
    called_back = s.push(headers, "c", "SBX0")
    s.final(paid, cancelled, called_back)
    wait_until(lambda: s.intent(called_back).state == "completed", what="the callback that came")
    reconciler = s.app.extensions["payhook.reconciler"]
    assert reconciler.tick() == 0, "nothing is queried before RECONCILE_AFTER"
    reconciler.clock = lambda: utcnow() + dt.timedelta(seconds=31)

    wait_until(lambda: reconciler.tick() or s.intent(paid).state != "pending", timeout=5, what="a reconciliation")
    wait_until(lambda: reconciler.tick() == 0 and s.intent(cancelled).state != "pending", what="both reconciled")

    [event] = s.stk_events(paid)
    assert (event.status, event.amount_minor, event.dedupe_key, event.source, event.details["query_checks"]) == (
        "succeeded", 25000, f"stk:{paid}", "query", 1)
    assert json.loads(webhook_body(event))["data"]["source"] == "query"
    [failed] = s.stk_events(cancelled)
    assert (failed.status, failed.result_code, failed.source) == ("failed", "1032", "query")
    [came] = s.stk_events(called_back)
    assert came.source == "callback" and json.loads(webhook_body(came))["data"]["source"] == "callback"
    assert (s.intent(paid).state, s.intent(paid).event_id, s.intent(paid).checks) == ("completed", event.id, 1)
    assert (s.intent(cancelled).state, s.intent(cancelled).result_code) == ("failed", "1032")
    with s.store.read() as session:
        deliveries = session.scalars(select(Delivery).where(Delivery.event_id.in_([event.id, failed.id]))).all()
    # Delivered and prioritised as callbacks are: a payment NORMAL, a failed one URGENT.
    assert sorted((d.event_id == event.id, d.priority) for d in deliveries) == [
        (False, Priority.URGENT), (True, Priority.NORMAL)]
    queries = s.sandbox.counters()["queries"]
    assert (queries.get(paid), queries.get(cancelled), queries.get(called_back)) == (1, 1, None)

    # Safaricom's callback, arriving after all: accepted as a duplicate, nothing recorded or changed.
    assert s.sandbox.send_callback(paid)["status"] == 200
    assert s.sandbox.send_callback(cancelled)["status"] == 200
    assert [e.id for e in s.stk_events(paid)] == [event.id]
    assert [e.id for e in s.stk_events(cancelled)] == [failed.id]
    assert s.intent(paid).state == "completed" and s.intent(cancelled).state == "failed"
    assert reconciler.tick() == 0


def test_a_callback_that_comes_while_waiting_settles_the_intent_and_it_is_not_queried(stack):
    s = stack(reconcile_after=60)
    merchant, headers = s.merchant()
    late = s.push(headers, "a", "SBX0D")
    s.final(late)
    assert s.sandbox.send_callback(late)["status"] == 200
    assert s.intent(late).state == "completed"
    later = s.app.extensions["payhook.reconciler"]
    later.clock = lambda: s.intent(late).created_at + dt.timedelta(seconds=120)
    assert later.tick() == 0
    assert s.sandbox.counters()["queries"].get(late) is None


def test_still_processing_backs_off_then_ends_unknown_with_the_operational_webhook_and_email(stack):
    s = stack(reconcile_max_checks=3)
    merchant, headers = s.merchant(event_types=["mpesa.stk_push", PAYMENT_UNRESOLVED])
    waiting = s.push(headers, "a", "SBX0W600", amount=75)
    before = counted("payhook_payments_unresolved_total")
    processing = counted("payhook_reconcile_checks_total", {"outcome": "processing"})
    reconciler = s.app.extensions["payhook.reconciler"]
    wait_until(lambda: reconciler.tick() is not None and s.intent(waiting).state == "unknown", timeout=10,
               what="the intent to end unknown")

    intent = s.intent(waiting)
    assert (intent.checks, intent.next_check_at, intent.event_id) == (3, None, None)
    assert s.sandbox.counters()["queries"][waiting] == 3
    assert counted("payhook_payments_unresolved_total") - before == 1
    assert counted("payhook_reconcile_checks_total", {"outcome": "processing"}) - processing == 3
    assert s.stk_events(waiting) == []
    with s.store.read() as session:
        [notice] = session.scalars(select(Event).where(Event.type == PAYMENT_UNRESOLVED)).all()
        [delivery] = session.scalars(select(Delivery).where(Delivery.event_id == notice.id)).all()
        [email] = session.scalars(select(Email).where(Email.template == "payment_unresolved")).all()
    assert (notice.status, notice.reference, notice.amount_minor, notice.details["intent_id"],
            notice.details["checks"]) == ("unknown", waiting, 7500, intent.id, 3)
    assert "500.001.1001" in notice.details["reason"]
    assert delivery.priority == notice.priority == Priority.URGENT
    assert email.recipients == ["merchant@example.test"] and email.context["checkout_request_id"] == waiting
    assert reconciler.tick() == 0, "an unknown intent is not queried again"


def test_faults_and_an_outage_are_waited_out_and_nothing_is_sent_twice(stack):
    s = stack(daraja_read_timeout=0.5)
    merchant, headers = s.merchant()
    dropped = s.push(headers, "a", "SBX2001D")
    s.final(dropped)
    reconciler = s.app.extensions["payhook.reconciler"]
    s.sandbox.fault(500, count=2, endpoint="stkquery")
    s.sandbox.fault(429, count=1, endpoint="stkquery")
    wait_until(lambda: reconciler.tick() is not None and s.sandbox.counters()["faults_served"] >= 3, timeout=10,
               what="the three faults served")
    assert s.intent(dropped).state == "pending" and s.intent(dropped).checks == 3
    assert s.stk_events(dropped) == []

    # Down: the process stops answering (its state kept), each query times out; the intent waits.
    os.kill(s.sandbox.process.pid, signal.SIGSTOP)
    try:
        wait_until(lambda: reconciler.tick() is not None and s.intent(dropped).checks >= 5, timeout=15,
                   what="queries timing out")
        assert s.intent(dropped).state == "pending"
    finally:
        os.kill(s.sandbox.process.pid, signal.SIGCONT)
    wait_until(lambda: reconciler.tick() is not None and s.intent(dropped).state != "pending", timeout=10,
               what="the reconciliation once Daraja answers")
    [event] = s.stk_events(dropped)
    assert (event.status, event.result_code, event.source) == ("failed", "2001", "query")
    assert s.intent(dropped).state == "failed"


def test_two_reconcilers_query_each_intent_once_and_share_one_token(stack):
    # Payhook's own per-second limit would make some queries wait a round: not what this test counts.
    s = stack(sandbox_settings={"query_latency": 0.2}, daraja_rate_limit=1000)
    merchant, headers = s.merchant()
    dropped = [s.push(headers, f"k{i}", "SBX0D") for i in range(8)]
    s.final(*dropped)
    replica = s.another_process()
    wait_until(lambda: all(s.intent(c).next_check_at <= utcnow() for c in dropped), what="the intents due")
    reconcilers = [s.app.extensions["payhook.reconciler"], replica.extensions["payhook.reconciler"]]
    claimed = [0, 0]

    def run(index):
        for _ in range(20):
            claimed[index] += reconcilers[index].tick()

    threads = [threading.Thread(target=run, args=(i,)) for i in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    try:
        counters = s.sandbox.counters()
        assert sum(claimed) == len(dropped)
        assert all(s.intent(c).state == "completed" and s.intent(c).checks == 1 for c in dropped)
        assert {c: counters["queries"][c] for c in dropped} == {c: 1 for c in dropped}
        assert set(counters["max_concurrent_queries"].values()) == {1}
        assert all(len(s.stk_events(c)) == 1 for c in dropped)
        # Eight pushes and eight queries from two processes: one OAuth token for them all.
        assert counters["tokens_issued"] == 1
    finally:
        replica.extensions["payhook.store"].dispose()


def test_a_claim_whose_process_died_is_taken_again_once_its_lease_ends(stack):
    s = stack()
    merchant, headers = s.merchant()
    dropped = s.push(headers, "a", "SBX0D")
    s.final(dropped)
    reconciler = s.app.extensions["payhook.reconciler"]
    now = s.intent(dropped).next_check_at + dt.timedelta(seconds=1)
    reconciler.clock = lambda: now
    [claim] = reconciler._claim()  # claimed, then the process "dies" before asking Daraja
    assert claim.checks == 1 and reconciler._claim() == []
    replica = s.another_process().extensions["payhook.reconciler"]
    replica.clock = lambda: now + dt.timedelta(seconds=reconciler.policy.lease + 1)
    try:
        assert replica.tick() == 1
        assert s.intent(dropped).state == "completed" and s.intent(dropped).checks == 2
        # The first process wakes up: its claim is no longer its own, it changes nothing.
        reconciler._wait(claim, "unavailable", "late", processing=False)
        assert s.intent(dropped).state == "completed"
    finally:
        replica.app.extensions["payhook.store"].dispose()


def test_an_intent_its_callback_raced_past_is_settled_from_the_event_without_a_query(stack):
    s = stack(reconcile_after=30)
    merchant, headers = s.merchant()
    paid = s.push(headers, "a", "SBX0")
    wait_until(lambda: s.intent(paid).state == "completed", what="the callback")
    # As when the callback's write and the intent's insert ran at once and neither saw the other.
    with s.store.write() as session:
        session.execute(update(PaymentIntent).where(PaymentIntent.checkout_request_id == paid)
                        .values(state="pending", event_id=None, result_code=None, resolved_at=None))
    reconciler = s.app.extensions["payhook.reconciler"]
    reconciler.clock = lambda: utcnow() + dt.timedelta(seconds=31)
    assert reconciler.tick() == 1
    [event] = s.stk_events(paid)
    assert (s.intent(paid).state, s.intent(paid).event_id, s.intent(paid).result_code) == ("completed", event.id, "0")
    assert s.sandbox.counters()["queries"].get(paid) is None
