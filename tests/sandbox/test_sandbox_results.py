"""Transaction Status and B2C: an immediate acknowledgement, then the Result POSTed to ResultURL."""

from __future__ import annotations

from payhook_shared.callbacks import mpesa
from support import Receiver


def _status_body(receiver, **fields):
    return {"Initiator": "testapi", "SecurityCredential": "c2VjcmV0", "CommandID": "TransactionStatusQuery",
            "TransactionID": "SKL4ABCD12", "PartyA": "600977", "IdentifierType": "4",
            "ResultURL": f"{receiver.url}/result", "QueueTimeOutURL": f"{receiver.url}/timeout",
            "Remarks": "check", "Occasion": "", **fields}


def _b2c_body(receiver, **fields):
    return {"OriginatorConversationID": "ph-b2c-1", "InitiatorName": "testapi", "SecurityCredential": "c2VjcmV0",
            "CommandID": "BusinessPayment", "Amount": 1500, "PartyA": 600996, "PartyB": 254712345678,
            "Remarks": "refund", "QueueTimeOutURL": f"{receiver.url}/timeout", "ResultURL": f"{receiver.url}/result",
            "Occassion": "", **fields}


def test_a_transaction_status_query_of_a_sandbox_payment_reports_it_on_the_result_url(daraja_sandbox, receiver):
    sandbox = daraja_sandbox(callback_delay=0.1)
    stk = Receiver().start()
    try:
        sandbox.stk_push(stk.url, Amount=75)
        stk.wait_for(1)
    finally:
        stk.stop()
    receipt = sandbox.pushes()[0]["MpesaReceiptNumber"]
    ack = sandbox.call("/mpesa/transactionstatus/v1/query", _status_body(receiver, TransactionID=receipt))
    assert ack.status_code == 200
    assert ack.json()["ResponseCode"] == "0"
    assert ack.json()["ResponseDescription"] == "Accept the service request successfully."
    [request] = receiver.wait_for(1)
    assert request.path == "/webhooks/result"
    result = request.json()["Result"]
    assert result["ConversationID"] == ack.json()["ConversationID"]
    assert result["OriginatorConversationID"] == ack.json()["OriginatorConversationID"]
    assert result["ResultCode"] == 0
    params = {p["Key"]: p["Value"] for p in result["ResultParameters"]["ResultParameter"]}
    assert params["ReceiptNo"] == receipt and params["Amount"] == 75
    event = mpesa.result_normaliser("status")(request.json())
    assert (event.receipt, event.amount_minor) == (receipt, 7500)


def test_remarks_name_a_failure_or_a_queue_timeout_on_the_timeout_url(daraja_sandbox, receiver):
    sandbox = daraja_sandbox(callback_delay=0)
    assert sandbox.call("/mpesa/transactionstatus/v1/query", _status_body(receiver, Remarks="SBX2001")).ok
    assert sandbox.call("/mpesa/transactionstatus/v1/query", _status_body(receiver, Occasion="SBX0T")).ok
    received = {r.path: r.json()["Result"] for r in receiver.wait_for(2)}
    assert received["/webhooks/result"]["ResultCode"] == 2001
    assert "ResultParameters" not in received["/webhooks/result"]
    assert received["/webhooks/timeout"]["ResultCode"] == "SFC_IC0003"
    timeout = mpesa.result_normaliser("status", timeout=True)({"Result": received["/webhooks/timeout"]})
    assert (timeout.status, timeout.result_code) == ("unknown", "SFC_IC0003")


def test_b2c_v3_acknowledges_with_the_caller_s_originator_id_and_posts_the_result(daraja_sandbox, receiver):
    sandbox = daraja_sandbox(callback_delay=0)
    ack = sandbox.call("/mpesa/b2c/v3/paymentrequest", _b2c_body(receiver))
    assert ack.status_code == 200, ack.text
    assert ack.json()["OriginatorConversationID"] == "ph-b2c-1"
    assert ack.json()["ConversationID"].startswith("AG_") and ack.json()["ResponseCode"] == "0"
    [request] = receiver.wait_for(1)
    result = request.json()["Result"]
    assert result["ConversationID"] == ack.json()["ConversationID"]
    assert result["OriginatorConversationID"] == "ph-b2c-1"
    params = {p["Key"]: p["Value"] for p in result["ResultParameters"]["ResultParameter"]}
    assert params["TransactionAmount"] == 1500 and params["TransactionReceipt"] == result["TransactionID"]
    assert params["ReceiverPartyPublicName"].startswith("254712345678")
    assert mpesa.result_normaliser("b2c")(request.json()).amount_minor == 150000


def test_b2c_v1_without_an_originator_id_gets_one_and_a_dropped_result_sends_nothing(daraja_sandbox, receiver):
    sandbox = daraja_sandbox(callback_delay=0)
    body = _b2c_body(receiver, Remarks="SBX0D")
    del body["OriginatorConversationID"]
    ack = sandbox.call("/mpesa/b2c/v1/paymentrequest", body)
    assert ack.status_code == 200 and ack.json()["OriginatorConversationID"]
    sandbox.call("/mpesa/b2c/v1/paymentrequest", _b2c_body(receiver, Remarks="SBX1"))
    [request] = receiver.wait_for(1)
    assert request.json()["Result"]["ResultCode"] == 1
    assert sandbox.counters()["callbacks"]["dropped"] == 1
    assert sandbox.counters()["requests"]["b2c"] == 2


def test_a_b2c_that_timed_out_is_found_by_a_status_query_of_its_originator_id(daraja_sandbox, receiver):
    sandbox = daraja_sandbox(callback_delay=0)
    paid = sandbox.call("/mpesa/b2c/v3/paymentrequest", _b2c_body(receiver, Remarks="SBX0T")).json()
    refused = sandbox.call("/mpesa/b2c/v3/paymentrequest", _b2c_body(
        receiver, OriginatorConversationID="ph-b2c-2", Amount=900, Remarks="SBX2001T")).json()
    timeouts = {r.json()["Result"]["OriginatorConversationID"]: r for r in receiver.wait_for(2)}
    assert {r.path for r in timeouts.values()} == {"/webhooks/timeout"}
    assert timeouts["ph-b2c-1"].json()["Result"]["ConversationID"] == paid["ConversationID"]
    assert timeouts["ph-b2c-2"].json()["Result"]["ResultCode"] == "SFC_IC0003"

    body = _status_body(receiver, TransactionID="", OriginalConversationID="ph-b2c-1", Remarks="follow-up")
    ack = sandbox.call("/mpesa/transactionstatus/v1/query", body).json()
    by_conversation = _status_body(receiver, TransactionID="", OriginalConversationID=refused["ConversationID"])
    sandbox.call("/mpesa/transactionstatus/v1/query", by_conversation)
    results = {r.json()["Result"]["ConversationID"]: r.json() for r in receiver.wait_for(4)[2:]}
    found = results[ack["ConversationID"]]["Result"]
    params = {p["Key"]: p["Value"] for p in found["ResultParameters"]["ResultParameter"]}
    assert (found["ResultCode"], params["TransactionStatus"], params["Amount"]) == (0, "Completed", 1500)
    assert params["ReceiptNo"] == found["TransactionID"] and params["CreditPartyName"].startswith("254712345678")
    [failed] = [r["Result"] for key, r in results.items() if key != ack["ConversationID"]]
    params = {p["Key"]: p["Value"] for p in failed["ResultParameters"]["ResultParameter"]}
    assert (params["TransactionStatus"], params["Amount"]) == ("Failed", 900)
    assert sandbox.counters()["status_queries"] == {"ph-b2c-1": 1, refused["ConversationID"]: 1}


def test_bad_result_requests_get_daraja_s_400_naming_the_field(daraja_sandbox, receiver):
    sandbox = daraja_sandbox()
    cases = [("/mpesa/transactionstatus/v1/query", _status_body(receiver, CommandID="Other"), "CommandID"),
             ("/mpesa/transactionstatus/v1/query", _status_body(receiver, TransactionID=""), "TransactionID"),
             ("/mpesa/transactionstatus/v1/query", _status_body(receiver, ResultURL="x"), "ResultURL"),
             ("/mpesa/b2c/v3/paymentrequest", _b2c_body(receiver, Amount=-5), "Amount"),
             ("/mpesa/b2c/v3/paymentrequest", _b2c_body(receiver, PartyB="0712"), "PartyB"),
             ("/mpesa/b2c/v3/paymentrequest", _b2c_body(receiver, CommandID="Gift"), "CommandID"),
             ("/mpesa/b2c/v3/paymentrequest", _b2c_body(receiver, QueueTimeOutURL="nowhere"), "QueueTimeOutURL")]
    for path, body, field in cases:
        answer = sandbox.call(path, body)
        assert (answer.status_code, answer.json()["errorMessage"]) == (400, f"Bad Request - Invalid {field}"), field
    assert sandbox.counters()["callbacks"]["pending"] == 0
