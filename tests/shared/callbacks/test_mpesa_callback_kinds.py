"""Every Daraja callback kind: each fixture normalises correctly, and every documented variation loads."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from factories import FIXTURES, fixture_json
from payhook_shared.callbacks import parse_json
from payhook_shared.callbacks.mpesa import NORMALISERS, parse_account_balance
from payhook_shared.errors import DecodeError

UTC = dt.timezone.utc

# fixture, kind, then the fields each must normalise to.
EXPECTED = [
    ("stk_success.json", "stk", dict(
        type="mpesa.stk_push", status="succeeded", amount_minor=100, receipt="NLJ7RT61SV",
        phone="254708374149", result_code="0", occurred_at=dt.datetime(2019, 12, 19, 7, 21, 15, tzinfo=UTC),
        dedupe_key="stk:ws_CO_191220191020363925")),
    ("stk_cancelled_1032.json", "stk", dict(
        type="mpesa.stk_push", status="failed", amount_minor=None, result_code="1032")),
    ("stk_string_codes.json", "stk", dict(
        type="mpesa.stk_push", status="succeeded", amount_minor=500, receipt="SG66ABCD12",
        phone="2547 ***** 149", result_code="0", occurred_at=dt.datetime(2024, 7, 6, 19, 45, 12, tzinfo=UTC))),
    ("c2b_validation.json", "c2b-validation", dict(
        type="mpesa.c2b.validation", status="unknown", amount_minor=1000, receipt="RKTQDM7W6S",
        phone="25470****149", reference="invoice008", dedupe_key="c2b-validation:RKTQDM7W6S")),
    ("c2b_confirmation_plain.json", "c2b-confirmation", dict(
        type="mpesa.c2b.confirmation", status="succeeded", amount_minor=1000, currency="KES",
        receipt="RKTQDM7W6S", phone="254708374149", reference="invoice008", result_code=None,
        occurred_at=dt.datetime(2019, 11, 22, 3, 38, 45, tzinfo=UTC), dedupe_key="c2b:RKTQDM7W6S")),
    ("c2b_confirmation_masked.json", "c2b-confirmation", dict(
        type="mpesa.c2b.confirmation", status="succeeded", amount_minor=500, receipt="RKL51ZDR4F",
        phone="2547 ***** 126", occurred_at=dt.datetime(2023, 11, 21, 9, 13, 25, tzinfo=UTC))),
    ("c2b_confirmation_hashed.json", "c2b-confirmation", dict(
        type="mpesa.c2b.confirmation", status="succeeded", amount_minor=150050, receipt="SGR7XJ4K2P",
        phone="2d6c7f6e8f8f0e9a1b4c9c3a7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a1b0c9d8e", reference=None,
        occurred_at=dt.datetime(2024, 7, 27, 11, 30, 12, tzinfo=UTC))),
    ("b2c_result_success.json", "b2c-result", dict(
        type="mpesa.b2c", status="succeeded", amount_minor=1000, receipt="SG632NMUAB", phone="254705912645",
        result_code="0", occurred_at=dt.datetime(2024, 7, 6, 19, 48, 52, tzinfo=UTC),
        dedupe_key="b2c-result:AG_20240706_2010364430d9bbdaf872:53e3-4aa8-9fe0-8fb5e4092cdd3533373")),
    ("b2c_result_failed.json", "b2c-result", dict(
        type="mpesa.b2c", status="failed", amount_minor=None, result_code="2001")),
    ("b2c_timeout.json", "b2c-timeout", dict(
        type="mpesa.b2c", status="unknown", result_code="SFC_IC0003",
        dedupe_key="b2c-timeout:AG_20191219_00004e48cf7e3533f581:10571-7910404-1")),
    ("b2b_result_success.json", "b2b-result", dict(
        type="mpesa.b2b", status="succeeded", amount_minor=19000, currency="KES",
        occurred_at=dt.datetime(2022, 11, 10, 8, 7, 17, tzinfo=UTC))),
    ("reversal_result_success.json", "reversal-result", dict(
        type="mpesa.reversal", status="succeeded", amount_minor=100, reference="MIM1HLQ8JA",
        phone="254708374149", occurred_at=dt.datetime(2018, 10, 5, 12, 32, 25, tzinfo=UTC))),
    ("transaction_status_result.json", "status-result", dict(
        type="mpesa.transaction_status", status="succeeded", amount_minor=30000, receipt="MBN31H462N",
        occurred_at=dt.datetime(2018, 2, 23, 2, 41, 12, tzinfo=UTC))),
    ("account_balance_result.json", "balance-result", dict(
        type="mpesa.account_balance", status="succeeded", amount_minor=None,
        occurred_at=dt.datetime(2020, 1, 9, 9, 57, 10, tzinfo=UTC))),
    ("account_balance_timeout.json", "balance-timeout", dict(
        type="mpesa.account_balance", status="unknown", result_code="R000002")),
]


def test_every_fixture_is_covered():
    assert {f"mpesa/{name}" for name, _, _ in EXPECTED} == {
        f"mpesa/{p.name}" for p in (FIXTURES / "mpesa").glob("*.json")}
    assert {kind for _, kind, _ in EXPECTED} >= {"stk", "c2b-validation", "c2b-confirmation", "b2c-result",
                                                  "b2c-timeout", "b2b-result", "reversal-result",
                                                  "status-result", "balance-result", "balance-timeout"}


@pytest.mark.parametrize("name, kind, expected", EXPECTED, ids=[e[0] for e in EXPECTED])
def test_fixture_normalises(name, kind, expected):
    event = NORMALISERS[kind](fixture_json(f"mpesa/{name}"))
    assert event.provider == "mpesa"
    assert {field: getattr(event, field) for field in expected} == expected


def test_result_details_keep_the_rest():
    balance = NORMALISERS["balance-result"](fixture_json("mpesa/account_balance_result.json"))
    assert balance.details["accounts"][0] == {"name": "Working Account", "currency": "KES", "available": "700000.00",
                                             "current": "700000.00", "reserved": "0.00", "uncleared": "0.00"}
    assert balance.details["accounts"][3]["available"] == "-1540.00"
    status = NORMALISERS["status-result"](fixture_json("mpesa/transaction_status_result.json"))
    assert status.details["TransactionStatus"] == "Completed"
    assert status.details["TransactionReason"] is None  # an item without Value
    assert status.details["ReferenceData"] == {"Occasion": None}
    assert parse_account_balance("junk") == [] and parse_account_balance(None) == []


def _b2c(**changes) -> dict:
    payload = fixture_json("mpesa/b2c_result_success.json")
    payload["Result"].update(changes)
    return payload


@pytest.mark.parametrize("code, status", [(0, "succeeded"), ("0", "succeeded"), (" 0 ", "succeeded"),
                                          (1, "failed"), ("2001", "failed"), ("R000002", "failed"),
                                          ("SFC_IC0003", "failed")])
def test_result_codes_numbers_or_strings_decide_status(code, status):
    # A success description never overrides a failing code.
    event = NORMALISERS["b2c-result"](_b2c(ResultCode=code, ResultType=str(code)))
    assert event.status == status


def test_timeouts_are_unknown_whatever_the_code():
    for kind in ("b2c", "b2b", "reversal", "status", "balance"):
        event = NORMALISERS[f"{kind}-timeout"](_b2c(ResultCode=0))
        assert event.status == "unknown" and event.dedupe_key.startswith(f"{kind}-timeout:")


def test_single_object_parameters_missing_values_and_string_amounts():
    payload = _b2c(ResultParameters={"ResultParameter": {"Key": "TransactionAmount", "Value": "5.00"}},
                   ReferenceData={"ReferenceItem": [{"Key": "Occasion"}, {"Key": "QueueTimeoutURL", "Value": "x"}]})
    event = NORMALISERS["b2c-result"](payload)
    assert event.amount_minor == 500 and event.receipt is None
    assert event.details["ReferenceData"] == {"Occasion": None, "QueueTimeoutURL": "x"}
    payload["Result"]["ResultParameters"] = {"ResultParameter": [{"Key": "TransactionAmount"}]}
    assert NORMALISERS["b2c-result"](payload).amount_minor is None


@pytest.mark.parametrize("when, expected", [
    (20240706224852, dt.datetime(2024, 7, 6, 19, 48, 52, tzinfo=UTC)),
    ("20240706224852", dt.datetime(2024, 7, 6, 19, 48, 52, tzinfo=UTC)),
    ("06.07.2024 22:48:52", dt.datetime(2024, 7, 6, 19, 48, 52, tzinfo=UTC)),
    ("yesterday", None), (20241399000000, None), (None, None),
])
def test_dates_in_every_form(when, expected):
    payload = _b2c()
    payload["Result"]["ResultParameters"]["ResultParameter"][3]["Value"] = when
    assert NORMALISERS["b2c-result"](payload).occurred_at == expected


@pytest.mark.parametrize("amount, minor", [("5.00", 500), (5, 500), (5.5, 550), ("1500.00", 150000)])
def test_c2b_amounts_numbers_or_strings(amount, minor):
    payload = fixture_json("mpesa/c2b_confirmation_plain.json") | {"TransAmount": amount}
    assert NORMALISERS["c2b-confirmation"](payload).amount_minor == minor


@pytest.mark.parametrize("msisdn", ["254708374149", 254708374149, "2547 ***** 126",
                                    "2d6c7f6e8f8f0e9a1b4c9c3a7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a1b0c9d8e"])
def test_msisdn_kept_as_given(msisdn):
    payload = fixture_json("mpesa/c2b_confirmation_plain.json") | {"MSISDN": msisdn}
    assert NORMALISERS["c2b-confirmation"](payload).phone == str(msisdn)


@pytest.mark.parametrize("kind, payload, problem", [
    ("c2b-confirmation", {"TransAmount": "5"}, "TransID: Missing data"),
    ("c2b-confirmation", {"TransID": "X1", "TransAmount": "five"}, "TransAmount: not an amount"),
    ("c2b-confirmation", {"TransID": "X1", "TransAmount": "-5"}, "TransAmount"),
    ("c2b-confirmation", {"TransID": "X1", "TransAmount": {"v": 1}}, "TransAmount: not an amount"),
    ("c2b-validation", {"MSISDN": ["2547"]}, "MSISDN: must be a string"),
    ("b2c-result", {"Result": {"ResultCode": 0}}, "Result.OriginatorConversationID: Missing data"),
    ("b2c-result", {"Result": {"ResultCode": True, "OriginatorConversationID": "1"}}, "Result.ResultCode"),
    ("b2c-result", {"Result": []}, "Result: must be a JSON object"),
    ("b2c-timeout", {}, "Result: Missing data"),
    ("status-result", {"Result": {"ResultCode": 0, "OriginatorConversationID": "1",
                                  "ResultParameters": {"ResultParameter": [{"Value": 1}]}}},
     "Result.ResultParameters.ResultParameter.0.Key"),
])
def test_malformed_callbacks_name_the_field(kind, payload, problem):
    with pytest.raises(DecodeError, match=problem.replace(".", r"\.")):
        NORMALISERS[kind](payload)


def test_validation_without_transid_dedupes_on_content():
    one = NORMALISERS["c2b-validation"]({"TransAmount": "5", "MSISDN": "2547"})
    same = NORMALISERS["c2b-validation"]({"MSISDN": "2547", "TransAmount": "5"})
    other = NORMALISERS["c2b-validation"]({"TransAmount": "6", "MSISDN": "2547"})
    assert one.dedupe_key == same.dedupe_key != other.dedupe_key
    assert one.dedupe_key.startswith("c2b-validation:sha256:")


def test_oversized_parameters_stay_out_of_columns():
    payload = _b2c()
    payload["Result"]["ResultParameters"]["ResultParameter"][1]["Value"] = "R" * 5000
    event = NORMALISERS["b2c-result"](payload)
    assert event.receipt is None


@pytest.mark.parametrize("body, problem", [
    (b'{"a": 1e999}', "out of range"),
    (b'{"a": 1e-999999999}', "out of range"),
    (b'{"a": -2.5e-400}', "out of range"),
    (b'{"a": ' + b"9" * 5000 + b"}", "not valid JSON"),
    (b'{"a": "\\u0000"}', "NUL"),
    (b'{"a": "\\ud800"}', "lone surrogate"),
    (b'{"\\u0000": 1}', "NUL"),
    (b'{"a": ["x", {"b": "\\uDBFF"}]}', "lone surrogate"),
    # The same problems without a \u escape: refused by the decoder itself.
    (b'{"a": "\x00"}', "not valid JSON"),
    (b'{"a": "\xed\xa0\x80"}', "not valid JSON"),
    (b"[" * 40 + b"]" * 40, "must be a JSON object"),
    (b'{"a":' * 40 + b"1" + b"}" * 40, "nested deeper"),
    ('{"a": "b"}'.encode("utf-16"), "not valid JSON"),
    (b'{"a": NaN}', "not valid JSON"),
])
def test_hostile_json_is_refused(body, problem):
    with pytest.raises(DecodeError, match=problem):
        parse_json(body)


def test_huge_but_valid_numbers_load():
    assert parse_json(json.dumps({"a": 10**300, "b": 1e308}).encode())["a"] == 10**300
