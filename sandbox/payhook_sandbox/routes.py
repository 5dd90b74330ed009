"""Daraja's endpoints, answering in Safaricom's documented shapes (docs/sandbox.md).

Errors take Daraja's shape, ``{"requestId", "errorCode", "errorMessage"}``; every accepted request is
answered at once and its callback sent later by the sandbox's dispatcher.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import math
import re
import time
import uuid
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, Response, current_app, g, jsonify, request
from payhook_cli import daraja

from .state import Sandbox

blueprint = Blueprint("daraja", __name__)

#: The endpoint names used by the counters and faults, by path.
ENDPOINTS = {
    "/oauth/v1/generate": "oauth",
    "/mpesa/stkpush/v1/processrequest": "stkpush",
    "/mpesa/stkpushquery/v1/query": "stkquery",
    "/mpesa/transactionstatus/v1/query": "transactionstatus",
    "/mpesa/c2b/v2/registerurl": "c2b_register",
    "/mpesa/c2b/v2/simulate": "c2b_simulate",
    "/mpesa/b2c/v1/paymentrequest": "b2c",
    "/mpesa/b2c/v3/paymentrequest": "b2c",
}
ACCEPTED = "Accept the service request successfully."
PHONE = re.compile(r"^254(?:7|1)[0-9]{8}$")
TIMESTAMP_FORMAT = "%Y%m%d%H%M%S"


def sandbox() -> Sandbox:
    """The app's sandbox state."""
    return current_app.extensions["payhook_sandbox"]


def error(status: int, code: str, message: str) -> tuple[Response, int]:
    """An error in Daraja's shape."""
    return jsonify({"requestId": g.get("request_id", ""), "errorCode": code, "errorMessage": message}), status


def _fault_answer(status: int) -> tuple[Response, int]:
    if status == 429:
        # Daraja's API gateway (Apigee) answers a burst with its own body, not Daraja's error shape.
        return jsonify({"fault": {"faultstring": "Spike arrest violation. Allowed rate : MessageRate{messagesPerPeriod=5, "
                                                 "periodInMicroseconds=1000000, maxBurstMessage=1.0}",
                                  "detail": {"errorcode": "policies.ratelimit.SpikeArrestViolation"}}}), 429
    return error(status, f"{status}.003.02", "System is busy. Please try again in few minutes.")


@blueprint.before_request
def _arrive():
    """Count every Daraja request, serve a due fault, and check the Bearer token (OAuth aside)."""
    g.request_id = f"{uuid.uuid4().hex[:5]}-{uuid.uuid4().int % 10**8}-1"
    endpoint = ENDPOINTS.get(request.path)
    if endpoint is None:
        return None
    status = sandbox().arrive(endpoint)
    if status is not None:
        return _fault_answer(status)
    if endpoint == "oauth":
        return None
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not sandbox().token_valid(token.strip()):
        return error(401, "404.001.03", "Invalid Access Token")
    return None


@blueprint.get("/oauth/v1/generate")
def oauth():
    """Daraja's OAuth: Basic base64(key:secret) and ``grant_type=client_credentials`` give a token."""
    if request.args.get("grant_type") != "client_credentials":
        return error(400, "400.008.02", "Invalid grant type passed")
    scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
    try:
        key, _, secret = base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        key = secret = ""
    issued = sandbox().issue_token(key, secret) if scheme.lower() == "basic" and key else None
    if issued is None:
        return error(400, "400.008.01", "Invalid Authentication passed")
    token, expires_in = issued
    # Daraja sends expires_in as a string.
    return jsonify({"access_token": token, "expires_in": str(expires_in)})


def _body() -> dict[str, Any] | None:
    body = request.get_json(silent=True)
    return body if isinstance(body, dict) else None


def _missing(body: dict[str, Any], fields: tuple[str, ...]) -> str | None:
    for field in fields:
        if body.get(field) in (None, ""):
            return field
    return None


def _url(value: object) -> bool:
    if not isinstance(value, str):
        return False
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def _amount(value: object, whole: bool) -> Decimal | None:
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        return None
    # Beyond a float's range, a callback could not carry it as the number Safaricom sends.
    if not amount.is_finite() or amount < 1 or not math.isfinite(float(amount)) \
            or (whole and amount != amount.to_integral_value()):
        return None
    return amount


def _check_password(body: dict[str, Any]) -> tuple[Response, int] | None:
    """Daraja's checks of BusinessShortCode, Timestamp and Password; None when they pass."""
    try:
        dt.datetime.strptime(str(body["Timestamp"]), TIMESTAMP_FORMAT)
    except ValueError:
        return error(400, "400.002.02", "Bad Request - Invalid Timestamp")
    valid = sandbox().password_valid(str(body["BusinessShortCode"]), str(body["Password"]), str(body["Timestamp"]))
    if valid is None:
        return error(400, "400.002.02", "Bad Request - Invalid BusinessShortCode")
    if not valid:
        return error(400, "400.002.02", "Bad Request - Invalid Password")
    return None


def _invalid(field: str) -> tuple[Response, int]:
    return error(400, "400.002.02", f"Bad Request - Invalid {field}")


STK_FIELDS = ("BusinessShortCode", "Password", "Timestamp", "TransactionType", "Amount", "PartyA", "PartyB",
              "PhoneNumber", "CallBackURL", "AccountReference", "TransactionDesc")


@blueprint.post("/mpesa/stkpush/v1/processrequest")
def stk_push():
    """M-Pesa Express: accept, then POST the stkCallback to CallBackURL after the scenario's delay."""
    body = _body()
    if body is None:
        return _invalid("Request Payload")
    if missing := _missing(body, STK_FIELDS):
        return _invalid(missing)
    if (failed := _check_password(body)) is not None:
        return failed
    if body["TransactionType"] not in ("CustomerPayBillOnline", "CustomerBuyGoodsOnline"):
        return _invalid("TransactionType")
    if _amount(body["Amount"], whole=True) is None:
        return _invalid("Amount")
    for field in ("PhoneNumber", "PartyA"):
        if not PHONE.match(str(body[field])):
            return _invalid(field)
    if not _url(body["CallBackURL"]):
        return _invalid("CallBackURL")
    push = sandbox().push(body)
    message = "Success. Request accepted for processing"
    return jsonify({"MerchantRequestID": push.merchant_request_id, "CheckoutRequestID": push.checkout_request_id,
                    "ResponseCode": "0", "ResponseDescription": message, "CustomerMessage": message})


@blueprint.post("/mpesa/stkpushquery/v1/query")
def stk_query():
    """M-Pesa Express Query: the result once final, Daraja's "being processed" error until then."""
    body = _body()
    if body is None:
        return _invalid("Request Payload")
    if missing := _missing(body, ("BusinessShortCode", "Password", "Timestamp", "CheckoutRequestID")):
        return _invalid(missing)
    if (failed := _check_password(body)) is not None:
        return failed
    push = sandbox().find_push(str(body["CheckoutRequestID"]))
    if push is None or push.shortcode != str(body["BusinessShortCode"]):
        return _invalid("CheckoutRequestID")
    with sandbox().querying(push.checkout_request_id) as latency:
        if latency:
            time.sleep(latency)  # a slow Daraja, so that overlapping queries of one id can be seen
        if time.monotonic() < push.final_at:
            return error(500, "500.001.1001", "The transaction is being processed")
        code = push.scenario.result_code
        return jsonify({"ResponseCode": "0", "ResponseDescription": "The service request has been accepted successsfully",
                        "MerchantRequestID": push.merchant_request_id,
                        "CheckoutRequestID": push.checkout_request_id, "ResultCode": code,
                        "ResultDesc": daraja.STK_CODES.get(code, "The service request failed.")})


STATUS_FIELDS = ("Initiator", "SecurityCredential", "CommandID", "PartyA", "IdentifierType", "ResultURL",
                 "QueueTimeOutURL")


@blueprint.post("/mpesa/transactionstatus/v1/query")
def transaction_status():
    """Transaction Status: acknowledge, then POST the Result to ResultURL (or a QueueTimeOut).

    The transaction is named by its receipt (``TransactionID``) or, when the caller has none (a B2C whose
    result never came), by ``OriginalConversationID``. A B2C payment of this sandbox is reported as it is
    (``TransactionStatus`` ``Completed`` or ``Failed``, its amount and receipt), a sandbox STK Push's receipt
    with its amount; any other transaction as a completed one of 10 shillings.
    """
    body = _body()
    if body is None:
        return _invalid("Request Payload")
    if missing := _missing(body, STATUS_FIELDS):
        return _invalid(missing)
    if body["CommandID"] != "TransactionStatusQuery":
        return _invalid("CommandID")
    for field in ("ResultURL", "QueueTimeOutURL"):
        if not _url(body[field]):
            return _invalid(field)
    receipt, original = str(body.get("TransactionID") or ""), str(body.get("OriginalConversationID") or "")
    if not receipt and not original:
        return _invalid("TransactionID")
    box = sandbox()
    box.count_status_query(receipt or original)
    payment = box.find_payment(*(key for key in (receipt, original) if key))
    if payment is not None:
        options = daraja.Options(amount=payment.amount, phone=payment.phone, shortcode=str(body["PartyA"]))
    else:
        known = box.known_receipt(receipt) or {}
        options = daraja.Options(amount=known.get("amount", Decimal("10")), phone=known.get("phone", "254708374149"),
                                 shortcode=str(body["PartyA"]))
    ids = box.result_request("status", (body.get("Remarks"), body.get("Occasion")), options, body["ResultURL"],
                             body["QueueTimeOutURL"], about=payment, receipt=receipt or None)
    return jsonify({**ids, "ResponseCode": "0", "ResponseDescription": ACCEPTED})


B2C_FIELDS = ("InitiatorName", "SecurityCredential", "CommandID", "Amount", "PartyA", "PartyB", "QueueTimeOutURL",
              "ResultURL")


@blueprint.post("/mpesa/b2c/v1/paymentrequest")
@blueprint.post("/mpesa/b2c/v3/paymentrequest")
def b2c():
    """B2C payment: acknowledge, then POST the Result to ResultURL (or a QueueTimeOut)."""
    body = _body()
    if body is None:
        return _invalid("Request Payload")
    if missing := _missing(body, B2C_FIELDS):
        return _invalid(missing)
    if body["CommandID"] not in ("BusinessPayment", "SalaryPayment", "PromotionPayment"):
        return _invalid("CommandID")
    amount = _amount(body["Amount"], whole=False)
    if amount is None:
        return _invalid("Amount")
    if not PHONE.match(str(body["PartyB"])):
        return _invalid("PartyB")
    for field in ("ResultURL", "QueueTimeOutURL"):
        if not _url(body[field]):
            return _invalid(field)
    options = daraja.Options(amount=amount, phone=str(body["PartyB"]), shortcode=str(body["PartyA"]))
    # v3 takes the caller's OriginatorConversationID, and its result carries it back.
    ids = sandbox().result_request("b2c", (body.get("Remarks"), body.get("Occassion"), body.get("Occasion")),
                                   options, body["ResultURL"], body["QueueTimeOutURL"],
                                   originator=str(body.get("OriginatorConversationID") or "") or None)
    return jsonify({"ConversationID": ids["ConversationID"], "OriginatorConversationID": ids["OriginatorConversationID"],
                    "ResponseCode": "0", "ResponseDescription": ACCEPTED})


@blueprint.post("/mpesa/c2b/v2/registerurl")
def c2b_register():
    """C2B v2 URL registration for a short code (Daraja spells the id ``OriginatorCoversationID``)."""
    body = _body()
    if body is None:
        return _invalid("Request Payload")
    if missing := _missing(body, ("ShortCode", "ResponseType", "ConfirmationURL")):
        return _invalid(missing)
    if str(body["ResponseType"]).lower() not in ("completed", "cancelled"):
        return _invalid("ResponseType")
    for field in ("ConfirmationURL", "ValidationURL"):
        if body.get(field) and not _url(body[field]):
            return _invalid(field)
    sandbox().register_c2b(str(body["ShortCode"]), {"ConfirmationURL": body["ConfirmationURL"],
                                                    "ValidationURL": body.get("ValidationURL") or "",
                                                    "ResponseType": str(body["ResponseType"])})
    return jsonify({"OriginatorCoversationID": g.request_id, "ResponseCode": "0", "ResponseDescription": "success"})


@blueprint.post("/mpesa/c2b/v2/simulate")
def c2b_simulate():
    """C2B v2 simulation: acknowledge, then call ValidationURL and, unless it rejects, ConfirmationURL."""
    body = _body()
    if body is None:
        return _invalid("Request Payload")
    if missing := _missing(body, ("ShortCode", "CommandID", "Amount", "Msisdn")):
        return _invalid(missing)
    if body["CommandID"] not in ("CustomerPayBillOnline", "CustomerBuyGoodsOnline"):
        return _invalid("CommandID")
    amount = _amount(body["Amount"], whole=True)
    if amount is None:
        return _invalid("Amount")
    if not PHONE.match(str(body["Msisdn"])):
        return _invalid("Msisdn")
    urls = sandbox().c2b_urls_of(str(body["ShortCode"]))
    if urls is None:
        return error(400, "400.002.02", "Bad Request - Invalid ShortCode: no C2B URLs registered for it")
    options = daraja.Options(amount=amount, phone=str(body["Msisdn"]), shortcode=str(body["ShortCode"]),
                             reference=str(body.get("BillRefNumber") or ""))
    callback = daraja.build("c2b-confirmation", options)
    if body["CommandID"] == "CustomerBuyGoodsOnline":
        callback["TransactionType"] = "Buy Goods"
    sandbox().simulate_c2b(urls, callback)
    return jsonify({"OriginatorCoversationID": g.request_id, "ResponseCode": "0", "ResponseDescription": ACCEPTED})
