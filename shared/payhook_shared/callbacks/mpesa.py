"""Safaricom Daraja callbacks: schemas and normalisation to ``NormalisedEvent``.

One schema and one normaliser per callback kind: STK Push results, C2B
validation and confirmation, and the ``{"Result": {...}}`` callbacks of B2C,
B2B, reversal, transaction status and account balance, whose QueueTimeOut
callbacks normalise to status ``unknown``: the request may still complete.

Statuses are decided on result codes, never on descriptions, which Safaricom
varies (``"[STK_CB - ]..."`` prefixes and the like). Codes may be numbers or
strings and alphanumeric (``"R000002"``, ``"SFC_IC0003"``); only ``0`` is success.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable
from typing import Any

from marshmallow import EXCLUDE, Schema, fields

from .. import money
from ..errors import DecodeError
from ..events import FAILED, QUERY, SUCCEEDED, UNKNOWN, NormalisedEvent
from .base import Code, OneOrMany, Text, load, parse_daraja_time

PROVIDER = "mpesa"
CURRENCY = "KES"
STK_PUSH = "mpesa.stk_push"
C2B_VALIDATION = "mpesa.c2b.validation"
C2B_CONFIRMATION = "mpesa.c2b.confirmation"
B2C = "mpesa.b2c"
B2B = "mpesa.b2b"
REVERSAL = "mpesa.reversal"
TRANSACTION_STATUS = "mpesa.transaction_status"
ACCOUNT_BALANCE = "mpesa.account_balance"
# A QueueTimeOut of these is followed by a Transaction Status query, whose answer becomes a ``.resolved`` event.
B2C_RESOLVED = "mpesa.b2c.resolved"
B2B_RESOLVED = "mpesa.b2b.resolved"
REVERSAL_RESOLVED = "mpesa.reversal.resolved"
#: The result kind of each type whose QueueTimeOut is followed up, and the type of its resolution.
FOLLOWED = {B2C: ("b2c", B2C_RESOLVED), B2B: ("b2b", B2B_RESOLVED), REVERSAL: ("reversal", REVERSAL_RESOLVED)}
# Event types that are not money received by the merchant: no "payment received" email.
NOT_RECEIVED_TYPES = frozenset({C2B_VALIDATION, B2C, B2B, REVERSAL, TRANSACTION_STATUS, ACCOUNT_BALANCE,
                                B2C_RESOLVED, B2B_RESOLVED, REVERSAL_RESOLVED})


class _Lenient(Schema):
    class Meta:
        unknown = EXCLUDE


class MetadataItemSchema(_Lenient):
    Name = Text(required=True, max_length=100)
    # Daraja omits Value on some items (e.g. Balance); a missing value is not an error.
    Value = fields.Raw(load_default=None, allow_none=True)


class CallbackMetadataSchema(_Lenient):
    Item = OneOrMany(fields.Nested(MetadataItemSchema), load_default=list)


class StkCallbackSchema(_Lenient):
    MerchantRequestID = Text(required=True, max_length=100)
    CheckoutRequestID = Text(required=True, max_length=100)
    ResultCode = Code(required=True)
    ResultDesc = Text(load_default=None, allow_none=True, max_length=1000, allow_empty=True)
    CallbackMetadata = fields.Nested(CallbackMetadataSchema, load_default=None, allow_none=True)


class StkBodySchema(_Lenient):
    stkCallback = fields.Nested(StkCallbackSchema, required=True)


class StkResultSchema(_Lenient):
    Body = fields.Nested(StkBodySchema, required=True)


_STK_SCHEMA = StkResultSchema()


def _items(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {item["Name"]: item["Value"] for item in items}


def _informational_amount(params: dict[str, Any], field: str | None, details: dict[str, Any],
                          currency: str = CURRENCY) -> int | None:
    """``params[field]`` in minor units, where the amount only informs: an unreadable one is noted, not refused.

    Safaricom does not resend a refused result, so the event is kept, its amount absent and the reason in
    ``details["amount_error"]``; the raw payload keeps the value as sent.
    """
    value = params.get(field) if field else None
    if value is None:
        return None
    try:
        return money.to_minor(value, currency)
    except money.AmountError as exc:
        details["amount_error"] = f"{field}: {exc}"
        return None


def _text(value: Any, limit: int = 100) -> str | None:
    """A scalar parameter as text; ``None`` when absent, structured, or longer than its column allows.

    An oversized value stays visible in the raw payload; it must not make the store refuse the event.
    """
    if value is None or isinstance(value, (dict, list)):
        return None
    text = str(value)
    return text if len(text) <= limit else None


def stk_dedupe_key(checkout_request_id: str) -> str:
    """An STK Push result's dedupe key: its callback and the reconciler's query answer share it."""
    return f"stk:{checkout_request_id}"


def normalise_stk(payload: dict[str, Any]) -> NormalisedEvent:
    """Validate and normalise an STK Push (M-Pesa Express) result callback.

    Raises:
      DecodeError: naming the missing or malformed field.
    """
    cb = load(_STK_SCHEMA, payload)["Body"]["stkCallback"]
    meta = _items(cb["CallbackMetadata"]["Item"]) if cb["CallbackMetadata"] else {}
    code = cb["ResultCode"]
    details = {k: v for k, v in meta.items()
               if k not in {"Amount", "MpesaReceiptNumber", "PhoneNumber", "TransactionDate"}}
    amount_minor = _informational_amount(meta, "Amount", details)
    return NormalisedEvent(
        provider=PROVIDER,
        type=STK_PUSH,
        status=SUCCEEDED if code == "0" else FAILED,
        dedupe_key=stk_dedupe_key(cb["CheckoutRequestID"]),
        amount_minor=amount_minor,
        currency=CURRENCY,
        receipt=_text(meta.get("MpesaReceiptNumber")),
        reference=cb["CheckoutRequestID"],
        provider_ids={"MerchantRequestID": cb["MerchantRequestID"], "CheckoutRequestID": cb["CheckoutRequestID"]},
        phone=_text(meta.get("PhoneNumber")),
        result_code=code,
        result_desc=cb["ResultDesc"],
        occurred_at=parse_daraja_time(meta.get("TransactionDate")),
        details=details,
    )


def _present(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v not in (None, "")}


# --- C2B: validation and confirmation share one payload shape ------------------------------------


class C2BValidationSchema(_Lenient):
    """A C2B validation request: Safaricom asks whether to accept a payment not yet made."""

    TransactionType = Text(load_default=None, allow_none=True, allow_empty=True, max_length=100)
    TransID = Text(load_default=None, allow_none=True, allow_empty=True, max_length=100)
    TransTime = fields.Raw(load_default=None, allow_none=True)
    # Read by the normalisers, with the amount grammar: a validation may carry any value, it only informs.
    TransAmount = fields.Raw(load_default=None, allow_none=True)
    BusinessShortCode = Text(load_default=None, allow_none=True, allow_empty=True, max_length=40)
    BillRefNumber = Text(load_default=None, allow_none=True, allow_empty=True, max_length=200)
    InvoiceNumber = Text(load_default=None, allow_none=True, allow_empty=True, max_length=200)
    OrgAccountBalance = Text(load_default=None, allow_none=True, allow_empty=True, max_length=40)
    ThirdPartyTransID = Text(load_default=None, allow_none=True, allow_empty=True, max_length=200)
    # Plain (2547...), masked ("2547 ***** 126") or a SHA-256 hex hash: kept as given.
    MSISDN = Text(load_default=None, allow_none=True, allow_empty=True, max_length=100)
    FirstName = Text(load_default=None, allow_none=True, allow_empty=True, max_length=200)
    MiddleName = Text(load_default=None, allow_none=True, allow_empty=True, max_length=200)
    LastName = Text(load_default=None, allow_none=True, allow_empty=True, max_length=200)


class C2BConfirmationSchema(C2BValidationSchema):
    """A C2B confirmation: the payment happened, so its id and amount are required."""

    TransID = Text(required=True, max_length=100)
    TransAmount = fields.Raw(required=True)


_C2B_VALIDATION_SCHEMA = C2BValidationSchema()
_C2B_CONFIRMATION_SCHEMA = C2BConfirmationSchema()
_C2B_DETAIL_FIELDS = ("TransactionType", "BillRefNumber", "InvoiceNumber", "OrgAccountBalance",
                      "ThirdPartyTransID", "FirstName", "MiddleName", "LastName")


def _c2b_event(c2b: dict[str, Any], event_type: str, status: str, dedupe_key: str,
               amount_minor: int | None, details: dict[str, Any] | None = None) -> NormalisedEvent:
    return NormalisedEvent(
        provider=PROVIDER,
        type=event_type,
        status=status,
        dedupe_key=dedupe_key,
        amount_minor=amount_minor,
        currency=CURRENCY,
        receipt=c2b["TransID"] or None,
        reference=c2b["BillRefNumber"] or None,
        provider_ids=_present({"TransID": c2b["TransID"], "BusinessShortCode": c2b["BusinessShortCode"],
                               "ThirdPartyTransID": c2b["ThirdPartyTransID"]}),
        phone=c2b["MSISDN"] or None,
        occurred_at=parse_daraja_time(c2b["TransTime"]),
        details={**_present({k: c2b[k] for k in _C2B_DETAIL_FIELDS}), **(details or {})},
    )


def load_c2b_validation(payload: dict[str, Any]) -> dict[str, Any]:
    """The validated fields of a C2B validation request (every field optional, ``None`` if absent).

    Raises:
      DecodeError: naming a field of the wrong type.
    """
    return load(_C2B_VALIDATION_SCHEMA, payload)


def normalise_c2b_validation(payload: dict[str, Any]) -> NormalisedEvent:
    """Normalise a C2B validation request; its status is ``unknown``: no money has moved yet.

    Without a TransID (sandbox traffic often sends none), the dedupe key is the
    payload's hash, so only an identical repeat counts as a duplicate.

    Raises:
      DecodeError: naming a field of the wrong type.
    """
    c2b = load_c2b_validation(payload)
    if c2b["TransID"]:
        key = f"c2b-validation:{c2b['TransID']}"
    else:
        canonical = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
        key = f"c2b-validation:sha256:{hashlib.sha256(canonical).hexdigest()}"
    details: dict[str, Any] = {}
    amount = _informational_amount(c2b, "TransAmount", details)
    return _c2b_event(c2b, C2B_VALIDATION, UNKNOWN, key, amount, details)


def normalise_c2b_confirmation(payload: dict[str, Any]) -> NormalisedEvent:
    """Validate and normalise a C2B confirmation: a completed payment, so ``succeeded``.

    Raises:
      DecodeError: naming the missing or malformed field, including an amount that is not one.
    """
    c2b = load(_C2B_CONFIRMATION_SCHEMA, payload)
    try:
        amount = money.to_minor(c2b["TransAmount"], CURRENCY)
    except money.AmountError as exc:
        raise DecodeError(f"TransAmount: {exc}", {"TransAmount": [str(exc)]}) from None
    return _c2b_event(c2b, C2B_CONFIRMATION, SUCCEEDED, f"c2b:{c2b['TransID']}", amount)


# --- Result callbacks: B2C, B2B, reversal, transaction status, account balance ------------------


class KeyValueSchema(_Lenient):
    Key = Text(required=True, max_length=100)
    # As with STK metadata, some parameters arrive without a Value.
    Value = fields.Raw(load_default=None, allow_none=True)


class ResultParametersSchema(_Lenient):
    ResultParameter = OneOrMany(fields.Nested(KeyValueSchema), load_default=list)


class ReferenceDataSchema(_Lenient):
    ReferenceItem = OneOrMany(fields.Nested(KeyValueSchema), load_default=list)


class ResultBodySchema(_Lenient):
    ResultType = Code(load_default=None, allow_none=True)
    ResultCode = Code(required=True)
    ResultDesc = Text(load_default=None, allow_none=True, max_length=1000, allow_empty=True)
    OriginatorConversationID = Text(required=True, max_length=100)
    ConversationID = Text(load_default=None, allow_none=True, allow_empty=True, max_length=100)
    TransactionID = Text(load_default=None, allow_none=True, allow_empty=True, max_length=100)
    ResultParameters = fields.Nested(ResultParametersSchema, load_default=None, allow_none=True)
    ReferenceData = fields.Nested(ReferenceDataSchema, load_default=None, allow_none=True)


class ResultSchema(_Lenient):
    """The ``{"Result": {...}}`` envelope of every asynchronous Daraja API's result and timeout."""

    Result = fields.Nested(ResultBodySchema, required=True)


_RESULT_SCHEMA = ResultSchema()


def _pairs(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {item["Key"]: item["Value"] for item in items}


def _party_phone(value: Any) -> str | None:
    """``"254705912645 - JOHN DOE"`` → ``"254705912645"``, as given (plain, masked or hashed)."""
    text = _text(value, 10_000)
    if not text:
        return None
    return _text(text.split(" - ", 1)[0].strip()) or None


def parse_account_balance(value: Any) -> list[dict[str, str]]:
    """``"Working Account|KES|700000.00|700000.00|0.00|0.00&..."`` → one dict per account.

    The fields are name, currency, then available, current, reserved and
    uncleared balances; amounts stay strings, exactly as sent (they may be negative).
    """
    labels = ("name", "currency", "available", "current", "reserved", "uncleared")
    text = _text(value, 10_000) or ""
    accounts = []
    for chunk in text.split("&"):
        parts = [p.strip() for p in chunk.split("|")]
        if len(parts) >= 2 and parts[0]:
            accounts.append(dict(zip(labels, parts)))
    return accounts


@dataclasses.dataclass(frozen=True)
class ResultKind:
    """Where one Result API keeps its amount, receipt, counterparty and time among its parameters."""

    event_type: str
    amount: str | None = None
    receipt: str | None = None
    party: str | None = None
    reference: str | None = None
    times: tuple[str, ...] = ()


RESULT_KINDS = {
    "b2c": ResultKind(B2C, amount="TransactionAmount", receipt="TransactionReceipt",
                      party="ReceiverPartyPublicName", times=("TransactionCompletedDateTime",)),
    "b2b": ResultKind(B2B, amount="Amount", party="ReceiverPartyPublicName", times=("TransCompletedTime",)),
    "reversal": ResultKind(REVERSAL, amount="Amount", party="CreditPartyPublicName",
                           reference="OriginalTransactionID", times=("TransCompletedTime",)),
    "status": ResultKind(TRANSACTION_STATUS, amount="Amount", receipt="ReceiptNo",
                         times=("FinalisedTime", "InitiatedTime")),
    "balance": ResultKind(ACCOUNT_BALANCE, times=("BOCompletedTime",)),
}


def _currency(params: dict[str, Any]) -> str:
    given = _text(params.get("Currency"))
    return given.upper() if given and len(given) == 3 and given.isalpha() else CURRENCY


def _normalise_result(payload: dict[str, Any], kind: str, timeout: bool) -> NormalisedEvent:
    spec = RESULT_KINDS[kind]
    result = load(_RESULT_SCHEMA, payload)["Result"]
    params = _pairs(result["ResultParameters"]["ResultParameter"]) if result["ResultParameters"] else {}
    refs = _pairs(result["ReferenceData"]["ReferenceItem"]) if result["ReferenceData"] else {}
    code = result["ResultCode"]
    if timeout:
        # The request timed out in Safaricom's queue: it may yet complete, so neither success nor failure.
        status = UNKNOWN
    else:
        status = SUCCEEDED if code == "0" else FAILED
    currency = _currency(params)
    used = {spec.amount, spec.receipt, spec.party, spec.reference, *spec.times} - {None}
    details = {k: v for k, v in params.items() if k not in used}
    if kind == "balance" and "AccountBalance" in details:
        details["accounts"] = parse_account_balance(details.pop("AccountBalance"))
    if refs:
        details["ReferenceData"] = refs
    if result["ResultType"] is not None:
        details["ResultType"] = result["ResultType"]
    amount_minor = _informational_amount(params, spec.amount, details, currency)
    occurred = next((t for t in (parse_daraja_time(params.get(k)) for k in spec.times) if t), None)
    ids = _present({"OriginatorConversationID": result["OriginatorConversationID"],
                    "ConversationID": result["ConversationID"], "TransactionID": result["TransactionID"]})
    suffix = "timeout" if timeout else "result"
    return NormalisedEvent(
        provider=PROVIDER,
        type=spec.event_type,
        status=status,
        dedupe_key=f"{kind}-{suffix}:{result['ConversationID'] or ''}:{result['OriginatorConversationID']}",
        amount_minor=amount_minor,
        currency=currency,
        receipt=_text(params.get(spec.receipt)) if spec.receipt else None,
        reference=_text(params.get(spec.reference), 200) if spec.reference else None,
        provider_ids=ids,
        phone=_party_phone(params.get(spec.party)) if spec.party else None,
        result_code=code,
        result_desc=result["ResultDesc"],
        occurred_at=occurred,
        details=details,
    )


def result_normaliser(kind: str, timeout: bool = False) -> Callable[[dict[str, Any]], NormalisedEvent]:
    """The normaliser for ``kind``'s result (or, with ``timeout``, QueueTimeOut) callback.

    Every returned function raises ``DecodeError`` naming the missing or malformed field.
    """
    def normalise(payload: dict[str, Any]) -> NormalisedEvent:
        return _normalise_result(payload, kind, timeout)

    normalise.__name__ = f"normalise_{kind}_{'timeout' if timeout else 'result'}"
    normalise.__doc__ = f"Validate and normalise a {kind} {'QueueTimeOut' if timeout else 'result'} callback."
    return normalise


NORMALISERS: dict[str, Callable[[dict[str, Any]], NormalisedEvent]] = {
    "stk": normalise_stk,
    "c2b-validation": normalise_c2b_validation,
    "c2b-confirmation": normalise_c2b_confirmation,
    **{f"{kind}-result": result_normaliser(kind) for kind in RESULT_KINDS},
    **{f"{kind}-timeout": result_normaliser(kind, timeout=True) for kind in RESULT_KINDS},
}
"""Every callback kind, as it appears last in the callback URL, and its normaliser."""


# --- Resolving a QueueTimeOut: the Transaction Status answer -------------------------------------------


#: What a Transaction Status result's ``TransactionStatus`` makes of the transaction (lower-cased); any other
#: value (``Pending``, a reversal's own states…) settles nothing, and the transaction is asked about again.
TRANSACTION_STATUSES = {"completed": SUCCEEDED, "failed": FAILED, "declined": FAILED, "cancelled": FAILED,
                        "expired": FAILED}


def is_followed_timeout(event_type: str, dedupe_key: str) -> bool:
    """Whether an event is a B2C, B2B or reversal QueueTimeOut, which a Transaction Status query follows."""
    return event_type in FOLLOWED and dedupe_key.startswith(f"{FOLLOWED[event_type][0]}-timeout:")


def status_answer_keys(conversation_id: str | None, originator_conversation_id: str) -> tuple[str, ...]:
    """The dedupe keys a Transaction Status query's result (then its QueueTimeOut) would be recorded under."""
    return tuple(f"status-{end}:{conversation}:{originator_conversation_id}"
                 for end in ("result", "timeout") for conversation in dict.fromkeys((conversation_id or "", "")))


def status_outcome(answer: Any) -> str | None:
    """What a recorded Transaction Status answer (a ``mpesa.transaction_status`` event) says of the transaction.

    ``succeeded`` or ``failed`` when the query itself succeeded (result code ``0``) and ``TransactionStatus``
    is final; ``None`` for a QueueTimeOut, a failed query (e.g. ``2001``, the initiator refused) or a
    transaction still in progress.
    """
    if answer.status != SUCCEEDED:
        return None
    return TRANSACTION_STATUSES.get(str((answer.details or {}).get("TransactionStatus") or "").strip().lower())


def resolution(original: Any, original_id: str, answer: Any, answer_id: str, status: str,
               queries: int) -> NormalisedEvent:
    """The ``mpesa.<kind>.resolved`` event: the QueueTimeOut event ``original`` settled by Transaction Status.

    ``answer`` is the recorded Transaction Status result (``status_outcome`` gave ``status``); both are
    normalised events or stored rows. One per original event (its dedupe key names it). The amount, receipt
    and time are the status result's; the original's ids stay, so the provider's key (ConversationID) finds
    both. ``details`` has the result's parameters, ``original_event_id``, ``status_event_id`` and ``queries``.
    """
    details = {**(answer.details or {}), "original_event_id": original_id, "status_event_id": answer_id,
               "queries": queries}
    phone = _party_phone(details.get("CreditPartyName")) if original.type == B2C else None
    return NormalisedEvent(
        provider=PROVIDER,
        type=FOLLOWED[original.type][1],
        status=status,
        dedupe_key=f"resolved:{original_id}",
        amount_minor=answer.amount_minor if answer.amount_minor is not None else original.amount_minor,
        currency=answer.currency if answer.amount_minor is not None else original.currency,
        receipt=answer.receipt,
        reference=original.reference,
        provider_ids={**(original.provider_ids or {}),
                      **({"TransactionID": answer.receipt} if answer.receipt else {})},
        phone=phone,
        result_code=answer.result_code,
        result_desc=answer.result_desc,
        occurred_at=answer.occurred_at,
        details=details,
        source=QUERY,
    )
