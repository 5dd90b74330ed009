"""``payhook simulate``: every Daraja kind with every documented result code is taken and classified rightly.

The payloads come from the CLI's own generator (``payhook_cli.daraja``), the one
``payhook simulate`` posts; the matrix goes through the real app in process, and
the command itself is run against a real server once per exit code it has.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from factories import api_key, callback_url, merchant_with_endpoints
from payhook_cli import daraja
from payhook_shared.priority import Priority
from payhook_shared.store import Event
from support import free_port

BIN = Path(sys.executable).parent
TYPES = {"stk": "mpesa.stk_push", "c2b-validation": "mpesa.c2b.validation",
         "c2b-confirmation": "mpesa.c2b.confirmation", "b2c": "mpesa.b2c", "b2b": "mpesa.b2b",
         "reversal": "mpesa.reversal", "status": "mpesa.transaction_status", "balance": "mpesa.account_balance"}
CASES = [(kind, code) for kind in daraja.KINDS for code in (list(daraja.codes_for(kind)) or [None])]


def expected(kind: str, code: str | None) -> tuple[str, str, str]:
    """(type, status, priority) by docs/mpesa.md and the default priority rules, written out independently."""
    family = kind if kind.startswith("c2b-") or kind == "stk" else kind.rsplit("-", 1)[0]
    if kind == "c2b-validation" or kind.endswith("-timeout"):
        status = "unknown"
    elif kind == "c2b-confirmation":
        status = "succeeded"
    else:
        status = "succeeded" if code == "0" else "failed"
    if family == "reversal":
        priority = "urgent"
    elif family in ("balance", "c2b-validation"):
        priority = "low"
    else:
        priority = "normal" if status == "succeeded" else "urgent"
    return TYPES[family], status, priority


def test_every_kind_and_code_has_a_case():
    assert len(daraja.KINDS) == 13
    assert {"0", "1", "1019", "1032", "1037", "2001"} <= set(daraja.codes_for("stk"))
    assert len(CASES) == 6 + 2 + 5 * (len(daraja.RESULT_CODES) + len(daraja.TIMEOUT_CODES))


@pytest.mark.parametrize("kind,code", CASES, ids=[f"{k}-{c}" for k, c in CASES])
def test_d_simulated_callback_is_accepted_and_classified(client, store, kind, code):
    merchant, _ = merchant_with_endpoints(store)
    payload = daraja.build(kind, daraja.Options(result_code=code))
    response = client.post(callback_url(merchant, kind), json=payload)
    assert response.status_code == 200
    assert str(response.get_json()["ResultCode"]) == "0"
    with store.read() as session:
        event = session.execute(select(Event).where(Event.merchant_id == merchant.id)).scalar_one()
    assert (event.type, event.status, Priority(event.priority).label) == expected(kind, code)
    if code is not None:
        assert event.result_code == code


def test_c2b_payloads_carry_masked_numbers_and_success_carries_a_receipt():
    c2b = daraja.build("c2b-confirmation", daraja.Options(phone="254712345678"))
    assert c2b["MSISDN"] == "2547 ***** 678"
    items = {i["Name"]: i["Value"] for i in daraja.build("stk")["Body"]["stkCallback"]["CallbackMetadata"]["Item"]}
    assert len(items["MpesaReceiptNumber"]) == 10 and str(items["TransactionDate"]).startswith("20")
    assert "CallbackMetadata" not in daraja.build("stk", daraja.Options(result_code="1032"))["Body"]["stkCallback"]


def _payhook(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "payhook"), *args], capture_output=True, text=True, timeout=60)


def test_commands_have_help_and_a_version():
    assert _payhook("--version").stdout.strip() == "payhook, version 0.1.0"
    for command in ([], ["listen"], ["simulate"], ["trigger"]):
        done = _payhook(*command, "--help")
        assert done.returncode == 0 and "Usage: payhook" in done.stdout


def test_simulate_exit_codes(store, web_server):
    base = web_server()
    merchant, _ = merchant_with_endpoints(store)
    to = f"{base}/cb/{merchant.id}/{merchant.callback_token}"
    done = _payhook("simulate", "b2c-result", "--result-code", "2001", "--to", to, "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["answer"] == {"ResultCode": 0, "ResultDesc": "Accepted"}
    assert _payhook("simulate", "stk", "--to", f"{base}/cb/{merchant.id}/wrong-token").returncode == 1
    assert _payhook("simulate", "stk", "--to", f"http://127.0.0.1:{free_port()}/cb/x/y").returncode == 3
    assert _payhook("simulate", "c2b-confirmation", "--result-code", "1").returncode == 2
    printed = _payhook("simulate", "balance-timeout", "--json")
    assert json.loads(printed.stdout)["Result"]["ResultCode"] == "SFC_IC0003"


def test_trigger_records_a_marked_test_event(store, web_server):
    base = web_server()
    merchant, _ = merchant_with_endpoints(store)
    key = api_key(store, merchant.id)["Authorization"].removeprefix("Bearer ")
    done = _payhook("trigger", "shop.payment", "--amount", "10.50", "--api-url", base, "--api-key", key, "--json")
    assert done.returncode == 0, done.stderr
    event_id = json.loads(done.stdout)["id"]
    with store.read() as session:
        event = session.get(Event, event_id)
        assert (event.type, event.amount_minor, event.status) == ("shop.payment", 1050, "succeeded")
        assert json.loads(event.raw_payload)["data"]["test"] is True
        assert event.dedupe_key.startswith("api:payhook-trigger:")
    assert _payhook("trigger", "x", "--api-url", base, "--api-key", "phk_wrong").returncode == 1
