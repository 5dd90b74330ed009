"""Safaricom Daraja callbacks: schemas and normalisation to ``NormalisedEvent``.

Statuses are decided on result codes, never on descriptions, which Safaricom
varies (``"[STK_CB - ]..."`` prefixes and the like).
"""

from __future__ import annotations

from typing import Any

from marshmallow import EXCLUDE, Schema, fields

from .. import money
from ..events import FAILED, SUCCEEDED, NormalisedEvent
from .base import Code, OneOrMany, Text, load, parse_daraja_time

PROVIDER = "mpesa"
CURRENCY = "KES"
STK_PUSH = "mpesa.stk_push"


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


def _minor(value: Any) -> int | None:
    try:
        return money.to_minor(value, CURRENCY)
    except money.AmountError:
        return None


def _text(value: Any) -> str | None:
    return None if value is None or isinstance(value, (dict, list)) else str(value)


def normalise_stk(payload: dict[str, Any]) -> NormalisedEvent:
    """Validate and normalise an STK Push (M-Pesa Express) result callback.

    Raises:
      DecodeError: naming the missing or malformed field.
    """
    cb = load(_STK_SCHEMA, payload)["Body"]["stkCallback"]
    meta = _items(cb["CallbackMetadata"]["Item"]) if cb["CallbackMetadata"] else {}
    code = cb["ResultCode"]
    return NormalisedEvent(
        provider=PROVIDER,
        type=STK_PUSH,
        status=SUCCEEDED if code == "0" else FAILED,
        dedupe_key=f"stk:{cb['CheckoutRequestID']}",
        amount_minor=_minor(meta.get("Amount")),
        currency=CURRENCY,
        receipt=_text(meta.get("MpesaReceiptNumber")),
        reference=cb["CheckoutRequestID"],
        provider_ids={"MerchantRequestID": cb["MerchantRequestID"], "CheckoutRequestID": cb["CheckoutRequestID"]},
        phone=_text(meta.get("PhoneNumber")),
        result_code=code,
        result_desc=cb["ResultDesc"],
        occurred_at=parse_daraja_time(meta.get("TransactionDate")),
        details={k: v for k, v in meta.items() if k not in {"Amount", "MpesaReceiptNumber", "PhoneNumber", "TransactionDate"}},
    )
