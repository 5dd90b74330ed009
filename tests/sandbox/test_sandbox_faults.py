"""Failing on demand: the next answers of an endpoint as 500 or 429, and the sandbox down and back."""

from __future__ import annotations

import pytest
import requests


def test_the_next_queries_fail_with_500_in_daraja_s_shape_then_answer_again(daraja_sandbox, receiver):
    sandbox = daraja_sandbox(callback_delay=0)
    checkout = sandbox.stk_push(receiver.url)["CheckoutRequestID"]
    receiver.wait_for(1)
    sandbox.fault(500, count=2, endpoint="stkquery")
    first, second, third = (sandbox.stk_query(checkout) for _ in range(3))
    assert [first.status_code, second.status_code, third.status_code] == [500, 500, 200]
    assert first.json()["errorCode"] == "500.003.02" and first.json()["requestId"]
    assert third.json()["ResultCode"] == "0"
    counts = sandbox.counters()
    assert counts["faults_served"] == 2 and counts["requests"]["stkquery"] == 3
    assert counts["queries"] == {checkout: 1}  # a failed answer never reached the transaction


def test_a_429_is_the_api_gateway_s_spike_arrest_and_touches_only_its_endpoint(daraja_sandbox, receiver):
    sandbox = daraja_sandbox()
    sandbox.fault(429, count=1, endpoint="stkpush")
    token = sandbox.token()  # OAuth is another endpoint: untouched
    refused = sandbox.call("/mpesa/stkpush/v1/processrequest", sandbox.stk_body(receiver.url), token=token)
    assert refused.status_code == 429
    assert refused.json()["fault"]["detail"]["errorcode"] == "policies.ratelimit.SpikeArrestViolation"
    assert sandbox.call("/mpesa/stkpush/v1/processrequest", sandbox.stk_body(receiver.url), token=token).ok
    assert len(sandbox.pushes()) == 1


def test_a_fault_without_an_endpoint_hits_the_next_request_whatever_it_is_oauth_included(daraja_sandbox):
    sandbox = daraja_sandbox()
    sandbox.fault(503)
    answer = requests.get(f"{sandbox.url}/oauth/v1/generate", params={"grant_type": "client_credentials"},
                          auth=(sandbox.consumer_key, sandbox.consumer_secret), timeout=10)
    assert answer.status_code == 503 and answer.json()["errorCode"] == "503.003.02"
    assert sandbox.token()
    assert sandbox.counters()["tokens_issued"] == 1


def test_faults_can_be_cleared_before_they_are_served(daraja_sandbox):
    sandbox = daraja_sandbox()
    sandbox.fault(500, count=5, endpoint="oauth")
    sandbox.control("DELETE", "faults", expect=204)
    assert sandbox.token()


BAD_FAULTS = [
    ({"status": 200}, "status must be an HTTP error status"),
    ({"status": "500"}, "status must be an HTTP error status"),
    ({"status": 500, "count": 0}, "count must be a positive integer"),
    ({"status": 500, "endpoint": "stk"}, "endpoint must be one of"),
    ([], "send a JSON object"),
]


def test_a_bad_fault_request_is_a_400_naming_the_problem(daraja_sandbox):
    sandbox = daraja_sandbox()
    for body, message in BAD_FAULTS:
        assert sandbox.control("POST", "faults", body, expect=400)["error"].startswith(message), body
    assert sandbox.token()  # no fault was kept


def test_down_then_back_on_the_same_port_with_its_transactions_gone(daraja_sandbox, receiver):
    sandbox = daraja_sandbox(callback_delay=0)
    checkout = sandbox.stk_push(receiver.url)["CheckoutRequestID"]
    sandbox.stop()
    with pytest.raises(requests.ConnectionError):
        sandbox.stk_query(checkout)
    sandbox.start()
    sandbox._token = None  # a restarted sandbox knows no token
    assert sandbox.stk_query(checkout).status_code == 400
