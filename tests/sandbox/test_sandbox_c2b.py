"""C2B v2: URLs registered per short code, then a simulated payment calls validation, then confirmation."""

from __future__ import annotations

import json

from payhook_shared.callbacks import mpesa
from support import wait_until


def _register(sandbox, receiver, response_type="Completed", validation=True, shortcode="600977"):
    return sandbox.call("/mpesa/c2b/v2/registerurl", {
        "ShortCode": shortcode, "ResponseType": response_type, "ConfirmationURL": f"{receiver.url}/confirmation",
        "ValidationURL": f"{receiver.url}/validation" if validation else ""})


def _simulate(sandbox, **fields):
    return sandbox.call("/mpesa/c2b/v2/simulate", {"ShortCode": "600977", "CommandID": "CustomerPayBillOnline",
                                                    "Amount": 120, "Msisdn": 254708374149,
                                                    "BillRefNumber": "ACC-7", **fields})


def test_a_payment_is_validated_then_confirmed_in_daraja_s_shape(daraja_sandbox, receiver):
    sandbox = daraja_sandbox(callback_delay=0)
    registered = _register(sandbox, receiver)
    assert registered.status_code == 200
    assert registered.json()["ResponseCode"] == "0" and registered.json()["ResponseDescription"] == "success"
    assert "OriginatorCoversationID" in registered.json()  # Daraja's spelling
    ack = _simulate(sandbox)
    assert ack.status_code == 200 and ack.json()["ResponseCode"] == "0"
    validation, confirmation = receiver.wait_for(2)
    assert [validation.path, confirmation.path] == ["/webhooks/validation", "/webhooks/confirmation"]
    assert validation.json() == confirmation.json()
    body = confirmation.json()
    assert (body["TransAmount"], body["BillRefNumber"], body["BusinessShortCode"]) == ("120.00", "ACC-7", "600977")
    assert body["MSISDN"] == "2547 ***** 149"  # masked, as Safaricom now sends it
    event = mpesa.normalise_c2b_confirmation(body)
    assert (event.amount_minor, event.receipt) == (12000, body["TransID"])


def test_a_rejecting_validation_stops_the_confirmation(daraja_sandbox, receiver):
    sandbox = daraja_sandbox(callback_delay=0)
    receiver.respond = lambda r: (200, {}, json.dumps({"ResultCode": "C2B00012", "ResultDesc": "Rejected"}).encode())
    _register(sandbox, receiver)
    _simulate(sandbox, CommandID="CustomerBuyGoodsOnline")
    [validation] = receiver.wait_for(1)
    assert validation.json()["TransactionType"] == "Buy Goods"
    wait_until(lambda: sandbox.counters()["callbacks"]["c2b_rejected"] == 1, what="the rejection counted")
    assert len(receiver.received) == 1


def test_an_unreachable_validation_confirms_when_completed_and_cancels_when_cancelled(daraja_sandbox, receiver):
    sandbox = daraja_sandbox(callback_delay=0)
    receiver.respond = lambda r: (500, {}, b"") if r.path.endswith("validation") else (200, {}, b"{}")
    _register(sandbox, receiver, "Completed")
    _simulate(sandbox)
    assert [r.path for r in receiver.wait_for(2)] == ["/webhooks/validation", "/webhooks/confirmation"]
    _register(sandbox, receiver, "Cancelled")
    _simulate(sandbox)
    receiver.wait_for(3)
    wait_until(lambda: sandbox.counters()["callbacks"]["failed"] == 2, what="the second validation failed")
    assert len(receiver.received) == 3


def test_without_a_validation_url_the_confirmation_comes_alone(daraja_sandbox, receiver):
    sandbox = daraja_sandbox(callback_delay=0)
    _register(sandbox, receiver, validation=False)
    _simulate(sandbox)
    [confirmation] = receiver.wait_for(1)
    assert confirmation.path == "/webhooks/confirmation"


def test_bad_registrations_and_simulations_get_a_400_naming_the_problem(daraja_sandbox, receiver):
    sandbox = daraja_sandbox()
    unregistered = _simulate(sandbox)
    assert unregistered.status_code == 400 and "Invalid ShortCode" in unregistered.json()["errorMessage"]
    bad = sandbox.call("/mpesa/c2b/v2/registerurl", {"ShortCode": "600977", "ResponseType": "Maybe",
                                                      "ConfirmationURL": f"{receiver.url}/c"})
    assert (bad.status_code, bad.json()["errorMessage"]) == (400, "Bad Request - Invalid ResponseType")
    _register(sandbox, receiver)
    for fields, name in (({"Amount": 0}, "Amount"), ({"Msisdn": "0708"}, "Msisdn"), ({"CommandID": "Pay"}, "CommandID")):
        answer = _simulate(sandbox, **fields)
        assert (answer.status_code, answer.json()["errorMessage"]) == (400, f"Bad Request - Invalid {name}")
