"""STK Push result normalisation, including the variations real traffic shows."""

from __future__ import annotations

import datetime as dt

import pytest

from factories import fixture_json
from payhook_shared.callbacks.mpesa import normalise_stk
from payhook_shared.errors import DecodeError
from payhook_shared.logs import mask_phone


def test_success_fixture():
    event = normalise_stk(fixture_json("mpesa/stk_success.json"))
    assert (event.type, event.status, event.amount_minor, event.currency) == ("mpesa.stk_push", "succeeded", 100, "KES")
    assert event.receipt == "NLJ7RT61SV" and event.phone == "254708374149"
    assert event.occurred_at == dt.datetime(2019, 12, 19, 7, 21, 15, tzinfo=dt.timezone.utc)  # 10:21:15 EAT
    assert event.dedupe_key == "stk:ws_CO_191220191020363925"


def test_cancelled_fixture_is_failed_without_metadata():
    event = normalise_stk(fixture_json("mpesa/stk_cancelled_1032.json"))
    assert (event.status, event.result_code, event.amount_minor, event.receipt) == ("failed", "1032", None, None)


def test_string_codes_single_item_and_missing_value():
    payload = fixture_json("mpesa/stk_success.json")
    cb = payload["Body"]["stkCallback"]
    cb["ResultCode"] = "0"
    cb["ResultDesc"] = "[STK_CB - ]Request cancelled by user"  # a description never decides the status
    cb["CallbackMetadata"]["Item"] = {"Name": "Amount", "Value": "5.00"}
    event = normalise_stk(payload)
    assert (event.status, event.amount_minor, event.receipt) == ("succeeded", 500, None)
    cb["CallbackMetadata"]["Item"] = [{"Name": "Balance"}, {"Name": "Amount", "Value": 2}]
    assert normalise_stk(payload).amount_minor == 200


def test_missing_checkout_id_is_named():
    payload = fixture_json("mpesa/stk_success.json")
    del payload["Body"]["stkCallback"]["CheckoutRequestID"]
    with pytest.raises(DecodeError, match="Body.stkCallback.CheckoutRequestID"):
        normalise_stk(payload)


def test_phone_numbers_are_masked_in_text():
    assert mask_phone("from 254708374149 and 0712345678") == "from 254708***149 and 0712***678"
    assert mask_phone("2547 ***** 126") == "2547 ***** 126"
