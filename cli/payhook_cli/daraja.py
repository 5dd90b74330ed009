"""Realistic Safaricom Daraja callbacks for every kind Payhook takes, in Safaricom's documented shapes.

One generator for ``payhook simulate`` and for Payhook's own test suite. Each
payload has plausible receipts, conversation ids and Daraja timestamps (East
Africa Time), C2B MSISDNs masked as Safaricom now sends them, and the result
code asked for: ``0`` is success, anything else a failure, and the timeout
kinds carry a QueueTimeOut code.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import random
import string
import uuid
from decimal import Decimal
from typing import Any

EAT = dt.timezone(dt.timedelta(hours=3))

#: Result codes and Safaricom's descriptions, by the family of kinds they appear in.
STK_CODES = {
    "0": "The service request is processed successfully.",
    "1": "The balance is insufficient for the transaction.",
    "1019": "Transaction has expired",
    "1032": "Request cancelled by user",
    "1037": "DS timeout user cannot be reached",
    "2001": "The initiator information is invalid.",
}
RESULT_CODES = {
    "0": "The service request is processed successfully.",
    "1": "The balance is insufficient for the transaction.",
    "2001": "The initiator information is invalid.",
    "8006": "The security credential is locked.",
}
TIMEOUT_CODES = {
    "SFC_IC0003": "The request timed out in the queue.",
    "R000002": "The request timed out.",
}

RESULT_FAMILIES = ("b2c", "b2b", "reversal", "status", "balance")
KINDS = ("stk", "c2b-validation", "c2b-confirmation",
         *(f"{family}-{end}" for family in RESULT_FAMILIES for end in ("result", "timeout")))
_QUEUE_PATHS = {"b2c": "b2cresults", "b2b": "b2bresults", "reversal": "reversalresults",
                "status": "transactionstatusresults", "balance": "abresults"}


@dataclasses.dataclass(frozen=True)
class Options:
    """What a simulated callback says; unset fields get plausible values."""

    result_code: str | None = None
    amount: Decimal = Decimal("10")
    phone: str = "254708374149"
    shortcode: str = "600977"
    reference: str = "INV-1001"
    name: str = "JOHN"


def codes_for(kind: str) -> dict[str, str]:
    """The documented result codes (and descriptions) a kind's callback may carry; C2B carries none."""
    if kind == "stk":
        return STK_CODES
    if kind.startswith("c2b-"):
        return {}
    return TIMEOUT_CODES if kind.endswith("-timeout") else RESULT_CODES


def default_code(kind: str) -> str | None:
    """The code a kind's callback carries when none is asked for: success, or the usual QueueTimeOut."""
    if kind.startswith("c2b-"):
        return None
    return "SFC_IC0003" if kind.endswith("-timeout") else "0"


def receipt(rng: random.Random | None = None) -> str:
    """An M-Pesa receipt such as ``SKL4ABCD12``: ten capitals and digits, starting with a letter."""
    rng = rng or random.Random()
    return rng.choice(string.ascii_uppercase) + "".join(
        rng.choice(string.ascii_uppercase + string.digits) for _ in range(9))


def masked_msisdn(phone: str) -> str:
    """A phone number masked as C2B callbacks now carry it: ``2547 ***** 149``."""
    return f"{phone[:4]} ***** {phone[-3:]}"


def _daraja_time(moment: dt.datetime) -> str:
    return moment.astimezone(EAT).strftime("%Y%m%d%H%M%S")


def _money(amount: Decimal) -> str:
    return f"{amount:.2f}"


def build(kind: str, options: Options | None = None, now: dt.datetime | None = None) -> dict[str, Any]:
    """The JSON body Safaricom posts for ``kind`` (one of ``KINDS``).

    Raises:
      ValueError: for an unknown kind, or a result code given to a C2B kind (which has none).
    """
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; one of {', '.join(KINDS)}")
    opts = options or Options()
    if kind.startswith("c2b-") and opts.result_code is not None:
        raise ValueError("C2B callbacks carry no result code")
    moment = now or dt.datetime.now(dt.timezone.utc)
    code = opts.result_code if opts.result_code is not None else default_code(kind)
    if kind == "stk":
        return _stk(opts, code, moment)
    if kind.startswith("c2b-"):
        return _c2b(opts, moment)
    family, end = kind.rsplit("-", 1)
    if end == "timeout":
        return _timeout(family, code, moment)
    return _result(family, opts, code, moment)


def _description(code: str, table: dict[str, str]) -> str:
    return table.get(code, "The service request failed.")


def _stk(opts: Options, code: str, moment: dt.datetime) -> dict[str, Any]:
    callback: dict[str, Any] = {
        "MerchantRequestID": f"{random.randint(10000, 99999)}-{random.randint(10**7, 10**8 - 1)}-1",
        "CheckoutRequestID": f"ws_CO_{moment.astimezone(EAT).strftime('%d%m%Y%H%M%S')}{random.randint(10**8, 10**9 - 1)}",
        "ResultCode": int(code) if code.isdigit() else code,
        "ResultDesc": _description(code, STK_CODES),
    }
    if code == "0":
        # Safaricom sends the paying number in full on STK results, and the amount as a number.
        callback["CallbackMetadata"] = {"Item": [
            {"Name": "Amount", "Value": float(opts.amount)},
            {"Name": "MpesaReceiptNumber", "Value": receipt()},
            {"Name": "TransactionDate", "Value": int(_daraja_time(moment))},
            {"Name": "PhoneNumber", "Value": int(opts.phone)},
        ]}
    return {"Body": {"stkCallback": callback}}


def _c2b(opts: Options, moment: dt.datetime) -> dict[str, Any]:
    return {
        "TransactionType": "Pay Bill", "TransID": receipt(), "TransTime": _daraja_time(moment),
        "TransAmount": _money(opts.amount), "BusinessShortCode": opts.shortcode, "BillRefNumber": opts.reference,
        "InvoiceNumber": "", "OrgAccountBalance": "", "ThirdPartyTransID": "",
        "MSISDN": masked_msisdn(opts.phone), "FirstName": opts.name, "MiddleName": "", "LastName": "",
    }


def _envelope(family: str, code: str, description: str, transaction_id: str) -> dict[str, Any]:
    return {
        "ResultType": 0,
        "ResultCode": int(code) if code.isdigit() else code,
        "ResultDesc": description,
        "OriginatorConversationID": str(uuid.uuid4()),
        "ConversationID": f"AG_{dt.date.today():%Y%m%d}_{uuid.uuid4().hex[:20]}",
        "TransactionID": transaction_id,
        "ReferenceData": {"ReferenceItem": {
            "Key": "QueueTimeoutURL",
            "Value": f"https://internalsandbox.safaricom.co.ke/mpesa/{_QUEUE_PATHS[family]}/v1/submit"}},
    }


def _timeout(family: str, code: str, moment: dt.datetime) -> dict[str, Any]:
    result = _envelope(family, code, _description(code, TIMEOUT_CODES), "")
    result["ResultType"] = 1
    return {"Result": result}


def _result(family: str, opts: Options, code: str, moment: dt.datetime) -> dict[str, Any]:
    ok = code == "0"
    transaction = receipt()
    result = _envelope(family, code, _description(code, RESULT_CODES), transaction if ok else "")
    if ok:
        result["ResultParameters"] = {"ResultParameter": [
            {"Key": key, "Value": value} for key, value in _parameters(family, opts, transaction, moment)]}
    return {"Result": result}


def _parameters(family: str, opts: Options, transaction: str, moment: dt.datetime) -> list[tuple[str, Any]]:
    when = _daraja_time(moment)
    party = f"{opts.phone} - {opts.name} DOE"
    if family == "b2c":
        return [("TransactionAmount", float(opts.amount)), ("TransactionReceipt", transaction),
                ("ReceiverPartyPublicName", party),
                ("TransactionCompletedDateTime", moment.astimezone(EAT).strftime("%d.%m.%Y %H:%M:%S")),
                ("B2CUtilityAccountAvailableFunds", 8959269.60), ("B2CWorkingAccountAvailableFunds", 1199371.00),
                ("B2CRecipientIsRegisteredCustomer", "Y"), ("B2CChargesPaidAccountAvailableFunds", 0.00)]
    if family == "b2b":
        return [("Amount", _money(opts.amount)), ("TransCompletedTime", when), ("Currency", "KES"),
                ("ReceiverPartyPublicName", f"{opts.shortcode} - Biller Company"), ("DebitPartyCharges", ""),
                ("DebitPartyAffectedAccountBalance", "Working Account|KES|346568.83|6186.83|340382.00|0.00")]
    if family == "reversal":
        return [("Amount", float(opts.amount)), ("TransCompletedTime", int(when)), ("OriginalTransactionID", receipt()),
                ("Charge", 0.00), ("CreditPartyPublicName", party),
                ("DebitPartyPublicName", f"{opts.shortcode} - Safaricom"),
                ("DebitAccountBalance", "Utility Account|KES|7722179.62|7722179.62|0.00|0.00")]
    if family == "status":
        return [("DebitPartyName", f"{opts.shortcode} - Safaricom"), ("CreditPartyName", party),
                ("InitiatedTime", int(when)), ("FinalisedTime", int(when)), ("TransactionStatus", "Completed"),
                ("ReasonType", "Business Payment to Customer via API"), ("Amount", float(opts.amount)),
                ("ReceiptNo", transaction)]
    return [("AccountBalance", "Working Account|KES|700000.00|700000.00|0.00|0.00"
                               "&Utility Account|KES|228037.00|228037.00|0.00|0.00"),
            ("BOCompletedTime", when)]
