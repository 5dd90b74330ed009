"""STK Push and STK Push Query against the sandbox, with a real callback receiver."""

from __future__ import annotations

import collections
import concurrent.futures

import pytest

from payhook_shared.callbacks import mpesa
from support import Receiver, wait_until

FAST = {"callback_delay": 0.2}


def _by_checkout(received):
    return {r.json()["Body"]["stkCallback"]["CheckoutRequestID"]: r.json()["Body"]["stkCallback"] for r in received}


def test_an_accepted_push_answers_like_daraja_then_calls_the_callback_url_back(daraja_sandbox, receiver):
    sandbox = daraja_sandbox(**FAST)
    answer = sandbox.stk_push(receiver.url, Amount=250, PhoneNumber=254712345678, PartyA=254712345678)
    assert answer["ResponseCode"] == "0"
    assert answer["ResponseDescription"] == answer["CustomerMessage"] == "Success. Request accepted for processing"
    assert answer["CheckoutRequestID"].startswith("ws_CO_")
    [request] = receiver.wait_for(1)
    assert request.path == "/webhooks" and request.headers["content-type"] == "application/json"
    callback = request.json()["Body"]["stkCallback"]
    assert callback["CheckoutRequestID"] == answer["CheckoutRequestID"]
    assert callback["MerchantRequestID"] == answer["MerchantRequestID"]
    assert callback["ResultCode"] == 0
    items = {item["Name"]: item["Value"] for item in callback["CallbackMetadata"]["Item"]}
    assert items["Amount"] == 250 and items["PhoneNumber"] == 254712345678
    [push] = sandbox.pushes()
    assert items["MpesaReceiptNumber"] == push["MpesaReceiptNumber"]
    # Payhook's own parser takes it as the payment it is.
    event = mpesa.normalise_stk(request.json())
    assert (event.status, event.amount_minor, event.receipt) == ("succeeded", 25000, push["MpesaReceiptNumber"])
    wait_until(lambda: sandbox.counters()["callbacks"]["sent"] == 1, what="the callback counted")


@pytest.mark.parametrize("code", ["1", "1019", "1032", "1037", "2001"])
def test_the_account_reference_names_the_result(daraja_sandbox, receiver, code):
    sandbox = daraja_sandbox(**FAST)
    answer = sandbox.stk_push(receiver.url, AccountReference=f"SBX{code}")
    [request] = receiver.wait_for(1)
    callback = request.json()["Body"]["stkCallback"]
    assert (callback["CheckoutRequestID"], str(callback["ResultCode"])) == (answer["CheckoutRequestID"], code)
    assert "CallbackMetadata" not in callback
    assert mpesa.normalise_stk(request.json()).status == "failed"
    final = sandbox.stk_query(answer["CheckoutRequestID"])
    assert final.status_code == 200
    assert final.json()["ResultCode"] == code and final.json()["ResultDesc"]


def test_the_query_says_being_processed_until_the_push_is_final(daraja_sandbox, receiver):
    sandbox = daraja_sandbox(callback_delay=1.0)
    answer = sandbox.stk_push(receiver.url, TransactionDesc="SBX1032")
    pending = sandbox.stk_query(answer["CheckoutRequestID"])
    assert pending.status_code == 500
    assert pending.json()["errorCode"] == "500.001.1001"
    assert pending.json()["errorMessage"] == "The transaction is being processed"
    final = wait_until(lambda: (r := sandbox.stk_query(answer["CheckoutRequestID"])).status_code == 200 and r,
                       timeout=5, what="the push to be final")
    assert final.json() | {"ResponseDescription": None} == {
        "ResponseCode": "0", "ResponseDescription": None, "MerchantRequestID": answer["MerchantRequestID"],
        "CheckoutRequestID": answer["CheckoutRequestID"], "ResultCode": "1032",
        "ResultDesc": "Request cancelled by user"}
    assert sandbox.counters()["queries"][answer["CheckoutRequestID"]] >= 2


def test_a_dropped_push_sends_nothing_is_final_to_a_query_and_can_be_called_back_late(daraja_sandbox, receiver):
    sandbox = daraja_sandbox(**FAST)
    answer = sandbox.stk_push(receiver.url, AccountReference="SBX0D")
    wait_until(lambda: sandbox.stk_query(answer["CheckoutRequestID"]).status_code == 200, what="final")
    assert receiver.received == []
    assert sandbox.counters()["callbacks"] | {"pending": 0} == {"sent": 0, "failed": 0, "dropped": 1,
                                                                 "c2b_rejected": 0, "pending": 0}
    assert sandbox.pushes()[0]["callback"] == "dropped"
    late = sandbox.send_callback(answer["CheckoutRequestID"])
    assert (late["status"], late["callback"]) == (200, "sent")
    [request] = receiver.wait_for(1)
    assert request.json()["Body"]["stkCallback"]["CheckoutRequestID"] == answer["CheckoutRequestID"]
    assert sandbox.counters()["callbacks"]["sent"] == 1


def test_a_late_push_calls_back_after_the_late_delay_and_is_final_before(daraja_sandbox, receiver):
    sandbox = daraja_sandbox(callback_delay=0.1, late_delay=1.5)
    answer = sandbox.stk_push(receiver.url, AccountReference="SBX0L")
    wait_until(lambda: sandbox.stk_query(answer["CheckoutRequestID"]).status_code == 200, what="final")
    assert receiver.received == [] and sandbox.pushes()[0]["callback"] == "scheduled"
    [request] = receiver.wait_for(1, timeout=10)
    assert request.json()["Body"]["stkCallback"]["CheckoutRequestID"] == answer["CheckoutRequestID"]


def test_a_callback_the_receiver_refuses_or_cannot_take_counts_as_failed(daraja_sandbox, receiver):
    sandbox = daraja_sandbox(**FAST)
    receiver.respond = lambda r: (503, {}, b"down")
    sandbox.stk_push(receiver.url)
    sandbox.stk_push("http://127.0.0.1:9/nobody-listens")
    receiver.wait_for(1)
    wait_until(lambda: sandbox.counters()["callbacks"]["failed"] == 2, what="two failed callbacks")
    assert sorted(p["callback"] for p in sandbox.pushes()) == ["failed", "failed"]
    statuses = sorted((c["status"] or 0, c["error"] or "") for c in sandbox.callbacks())
    assert statuses == [(0, "ConnectionError"), (503, "")]


def test_two_hundred_pushes_with_a_fifth_of_the_callbacks_dropped(daraja_sandbox, receiver):
    sandbox = daraja_sandbox(callback_delay=0.05, seed=23)
    sandbox.configure(outcomes={"0": 6, "1032": 2, "1037": 1, "2001": 1}, drop_ratio=0.2)
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: sandbox.stk_push(receiver.url), range(200)))
    pushes = {p["CheckoutRequestID"]: p for p in sandbox.pushes()}
    assert set(pushes) == {a["CheckoutRequestID"] for a in answers}
    dropped = {i for i, p in pushes.items() if p["fate"] == "drop"}
    assert 20 <= len(dropped) <= 60  # 40 expected of 200
    received = _by_checkout(receiver.wait_for(200 - len(dropped), timeout=30))
    assert set(received) == set(pushes) - dropped
    assert all(str(received[i]["ResultCode"]) == pushes[i]["ResultCode"] for i in received)
    codes = collections.Counter(p["ResultCode"] for p in pushes.values())
    assert set(codes) == {"0", "1032", "1037", "2001"} and codes["0"] > codes["1032"]
    # A dropped push is final all the same: a reconciler's query finds its result.
    some = sorted(dropped)[0]
    assert sandbox.stk_query(some).json()["ResultCode"] == pushes[some]["ResultCode"]
    counts = sandbox.counters()
    assert counts["callbacks"]["sent"] == 200 - len(dropped) and counts["callbacks"]["dropped"] == len(dropped)
    assert counts["requests"]["stkpush"] == 200


def test_the_same_seed_draws_the_same_outcomes(daraja_sandbox, receiver):
    draws = []
    for _ in range(2):
        sandbox = daraja_sandbox(callback_delay=30, seed=7)
        sandbox.configure(outcomes={"0": 1, "1032": 1, "1037": 1}, drop_ratio=0.3, late_ratio=0.2)
        for _ in range(30):
            sandbox.stk_push(receiver.url)
        draws.append([(p["ResultCode"], p["fate"]) for p in sandbox.pushes()])
    assert draws[0] == draws[1]
    assert len(set(draws[0])) > 3


def test_overlapping_queries_of_one_push_are_counted_with_the_most_at_once(daraja_sandbox, receiver):
    sandbox = daraja_sandbox(callback_delay=0.05, query_latency=0.5)
    one, other = (sandbox.stk_push(receiver.url)["CheckoutRequestID"] for _ in range(2))
    wait_until(lambda: all(p["final"] for p in sandbox.pushes()), what="both final")
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        answers = list(pool.map(sandbox.stk_query, [one, one, one]))
    sandbox.stk_query(other)
    sandbox.stk_query(other)
    assert [a.status_code for a in answers] == [200, 200, 200]
    counts = sandbox.counters()
    assert counts["queries"] == {one: 3, other: 2}
    assert counts["max_concurrent_queries"][one] >= 2  # three queries of 0.5 s sent at once overlap
    assert counts["max_concurrent_queries"][other] == 1


BAD_FIELDS = [
    ("Password", "bm90LWl0"), ("Timestamp", "2026-12-03"), ("BusinessShortCode", 600000),
    ("TransactionType", "CustomerPayAnything"), ("Amount", 0), ("Amount", 1.5), ("Amount", "ten"),
    ("PhoneNumber", 712345678), ("PartyA", "2547123"), ("CallBackURL", "ftp://x"), ("CallBackURL", "not a url"),
    ("AccountReference", ""), ("TransactionDesc", None)]


def test_a_bad_push_gets_daraja_s_400_naming_the_field(daraja_sandbox, receiver):
    sandbox = daraja_sandbox()
    for field, value in BAD_FIELDS:
        body = sandbox.stk_body(receiver.url, **{field: value})
        if field == "Timestamp":
            body["Password"] = sandbox.password(value)
        answer = sandbox.call("/mpesa/stkpush/v1/processrequest", body)
        assert answer.status_code == 400, (field, value)
        assert answer.json()["errorCode"] == "400.002.02"
        assert answer.json()["errorMessage"] == f"Bad Request - Invalid {field}"
    assert sandbox.pushes() == []


def test_a_push_that_is_not_a_json_object_or_a_query_of_an_unknown_id_gets_a_400(daraja_sandbox):
    sandbox = daraja_sandbox()
    for body in ([], "text", None):
        answer = sandbox.call("/mpesa/stkpush/v1/processrequest", body)
        assert (answer.status_code, answer.json()["errorMessage"]) == (400, "Bad Request - Invalid Request Payload")
    unknown = sandbox.stk_query("ws_CO_000")
    assert (unknown.status_code, unknown.json()["errorMessage"]) == (400, "Bad Request - Invalid CheckoutRequestID")


def test_another_short_code_works_once_added_and_queries_must_name_the_push_s_own(daraja_sandbox, receiver):
    sandbox = daraja_sandbox(**FAST)
    sandbox.control("POST", "credentials", {"shortcode": "600111", "passkey": "pk-600111"}, expect=201)
    body = sandbox.stk_body(receiver.url, BusinessShortCode=600111, PartyB=600111)
    body["Password"] = sandbox.password(body["Timestamp"], "600111", "pk-600111")
    answer = sandbox.call("/mpesa/stkpush/v1/processrequest", body)
    assert answer.status_code == 200, answer.text
    receiver.wait_for(1)
    # The default short code's query cannot see another short code's push.
    wrong = sandbox.stk_query(answer.json()["CheckoutRequestID"])
    assert wrong.status_code == 400


def test_two_receivers_each_get_only_their_own_callbacks(daraja_sandbox):
    sandbox = daraja_sandbox(**FAST)
    first, second = Receiver().start(), Receiver().start()
    try:
        a = sandbox.stk_push(first.url)["CheckoutRequestID"]
        b = sandbox.stk_push(second.url, AccountReference="SBX1037")["CheckoutRequestID"]
        assert list(_by_checkout(first.wait_for(1))) == [a]
        assert list(_by_checkout(second.wait_for(1))) == [b]
    finally:
        first.stop()
        second.stop()
