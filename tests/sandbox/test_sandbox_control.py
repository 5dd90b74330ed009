"""The control API and the command line: bad input is a 400 (or a clear exit) naming the problem."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from payhook_sandbox.app import create_app
from payhook_sandbox.errors import SandboxError
from payhook_sandbox.settings import load

BIN = Path(sys.executable).parent


def test_the_config_shows_and_changes_the_mix(daraja_sandbox):
    sandbox = daraja_sandbox(callback_delay=0.5, drop_ratio=0.1)
    before = sandbox.control("GET", "config")
    assert before == {
        "outcomes": {"0": 1.0}, "drop_ratio": 0.1, "late_ratio": 0.0, "callback_delay": 0.5, "late_delay": 60.0,
        "query_latency": 0.0, "token_expires_in": 3599, "shortcodes": ["174379"]}
    after = sandbox.configure(outcomes={"0": 3, "1032": 1}, late_ratio=0.5, late_delay=5, query_latency=0.2, seed=3)
    assert after["outcomes"] == {"0": 3.0, "1032": 1.0}
    assert (after["late_ratio"], after["late_delay"], after["query_latency"]) == (0.5, 5.0, 0.2)
    sandbox.control("POST", "reset", expect=204)
    assert sandbox.control("GET", "config") == before


BAD_CONFIGS = [
    ({"outcomes": {}}, "outcomes must map result codes to weights"),
    ({"outcomes": {"zero": 1}}, "outcomes must map result codes to weights"),
    ({"outcomes": {"0": -1}}, "outcomes must map result codes to weights"),
    ({"outcomes": {"0": 0}}, "outcomes must map result codes to weights"),
    ({"drop_ratio": 1.5}, "drop_ratio must be a number from 0 to 1"),
    ({"drop_ratio": "0.2"}, "drop_ratio must be a number from 0 to 1"),
    ({"drop_ratio": 0.7, "late_ratio": 0.5}, "drop_ratio + late_ratio must not exceed 1"),
    ({"callback_delay": -1}, "callback_delay must be a number from 0"),
    ({"token_expires_in": 0}, "token_expires_in must be a number from 1"),
    ({"seed": "x"}, "seed must be an integer"),
    ({"colour": "blue"}, "unknown field(s): colour"),
    ("[]", "send a JSON object"),
]


def test_a_bad_config_is_a_400_naming_the_problem_and_changes_nothing(daraja_sandbox):
    sandbox = daraja_sandbox()
    before = sandbox.control("GET", "config")
    for body, message in BAD_CONFIGS:
        assert sandbox.control("PUT", "config", body, expect=400)["error"].startswith(message), body
    assert sandbox.control("GET", "config") == before


def test_bad_credentials_requests_are_400s(daraja_sandbox):
    sandbox = daraja_sandbox()
    pairs = "send consumer_key with consumer_secret, and/or shortcode with passkey"
    for body, message in (({}, pairs), ({"consumer_key": "k"}, pairs), ({"passkey": "p"}, pairs),
                          ({"shortcode": "1", "passkey": 5}, "consumer_key, consumer_secret, shortcode, passkey must be strings")):
        assert sandbox.control("POST", "credentials", body, expect=400)["error"] == message


def test_an_unknown_path_or_push_is_a_json_404_and_a_push_not_final_a_400(daraja_sandbox, receiver):
    sandbox = daraja_sandbox(callback_delay=60)
    answer = requests.get(f"{sandbox.url}/mpesa/nothing", timeout=10)
    assert answer.status_code == 404 and "error" in answer.json()
    assert "ws_CO_1" in sandbox.control("POST", "stk/ws_CO_1/callback", expect=404)["error"]
    checkout = sandbox.stk_push(receiver.url)["CheckoutRequestID"]
    assert "not final yet" in sandbox.control("POST", f"stk/{checkout}/callback", expect=400)["error"]
    assert sandbox.counters()["callbacks"]["pending"] == 1


def test_the_callback_log_holds_what_was_sent(daraja_sandbox, receiver):
    sandbox = daraja_sandbox(callback_delay=0)
    checkout = sandbox.stk_push(receiver.url)["CheckoutRequestID"]
    receiver.wait_for(1)
    [logged] = sandbox.callbacks()
    assert (logged["kind"], logged["url"], logged["status"], logged["error"]) == ("stk", receiver.url, 200, None)
    assert logged["body"]["Body"]["stkCallback"]["CheckoutRequestID"] == checkout


def test_settings_come_from_the_environment_then_the_flags_and_bad_ones_are_refused():
    assert load({"SANDBOX_PORT": "9000", "SANDBOX_DROP_RATIO": "0.25"}, port=9100).port == 9100
    assert load({"SANDBOX_DROP_RATIO": "0.25"}).drop_ratio == 0.25
    for environ, message in (({"SANDBOX_PORT": "high"}, "SANDBOX_PORT must be int"),
                             ({"SANDBOX_DROP_RATIO": "2"}, "SANDBOX_DROP_RATIO must be between 0 and 1"),
                             ({"SANDBOX_DROP_RATIO": "0.6", "SANDBOX_LATE_RATIO": "0.6"}, "must not exceed 1"),
                             ({"SANDBOX_CALLBACK_DELAY": "-1"}, "SANDBOX_CALLBACK_DELAY must not be negative"),
                             ({"SANDBOX_TOKEN_EXPIRES_IN": "0"}, "SANDBOX_TOKEN_EXPIRES_IN must be positive")):
        with pytest.raises(SandboxError, match=message):
            load(environ)
    with pytest.raises(SandboxError, match="unknown settings: colour"):
        load({}, colour="blue")


def test_the_command_exits_with_a_clear_message_on_a_bad_setting():
    done = subprocess.run([str(BIN / "payhook-daraja-sandbox"), "--drop-ratio", "3"], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "SANDBOX_PORT": "1"})
    assert done.returncode == 1
    assert "SANDBOX_DROP_RATIO must be between 0 and 1" in done.stderr
    version = subprocess.run([str(BIN / "payhook-daraja-sandbox"), "--version"], capture_output=True, text=True,
                             timeout=60)
    assert version.stdout.strip() == "payhook-daraja-sandbox 0.1.0"


def test_create_app_takes_overrides_and_builds_nothing_shared():
    one, two = create_app({"shortcode": "600000", "passkey": "p"}), create_app()
    try:
        assert one.extensions["payhook_sandbox"].passkeys == {"600000": "p"}
        assert two.extensions["payhook_sandbox"].passkeys == {"174379": load({}).passkey}
    finally:
        for app in (one, two):
            app.extensions["payhook_sandbox"].dispatcher.stop()
