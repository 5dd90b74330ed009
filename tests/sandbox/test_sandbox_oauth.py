"""The sandbox's OAuth: tokens for known apps only, counted, living as long as configured."""

from __future__ import annotations

import requests

from support import wait_until


def _generate(sandbox, auth=None, grant="client_credentials", headers=None):
    return requests.get(f"{sandbox.url}/oauth/v1/generate", params={"grant_type": grant}, auth=auth,
                        headers=headers, timeout=10)


def test_a_known_app_gets_a_token_with_daraja_s_expires_in_and_it_is_counted(daraja_sandbox):
    sandbox = daraja_sandbox(token_expires_in=1200)
    first = _generate(sandbox, (sandbox.consumer_key, sandbox.consumer_secret))
    second = _generate(sandbox, (sandbox.consumer_key, sandbox.consumer_secret))
    assert first.status_code == second.status_code == 200
    assert first.json()["expires_in"] == "1200"  # a string, as Daraja sends it
    assert first.json()["access_token"] != second.json()["access_token"]
    assert sandbox.counters()["tokens_issued"] == 2
    assert sandbox.counters()["requests"]["oauth"] == 2


def test_wrong_credentials_or_grant_type_get_daraja_s_400_and_no_token(daraja_sandbox):
    sandbox = daraja_sandbox()
    wrong_secret = _generate(sandbox, (sandbox.consumer_key, "not-the-secret"))
    unknown_app = _generate(sandbox, ("someone-else", sandbox.consumer_secret))
    no_auth = _generate(sandbox)
    garbage = _generate(sandbox, headers={"Authorization": "Basic %%%"})
    for answer in (wrong_secret, unknown_app, no_auth, garbage):
        assert answer.status_code == 400
        assert answer.json()["errorCode"] == "400.008.01"
        assert answer.json()["errorMessage"] == "Invalid Authentication passed"
        assert answer.json()["requestId"]
    wrong_grant = _generate(sandbox, (sandbox.consumer_key, sandbox.consumer_secret), grant="password")
    assert (wrong_grant.status_code, wrong_grant.json()["errorCode"]) == (400, "400.008.02")
    assert sandbox.counters()["tokens_issued"] == 0


def test_an_api_call_needs_a_live_token_issued_by_this_sandbox(daraja_sandbox, receiver):
    sandbox = daraja_sandbox(token_expires_in=1)
    body = sandbox.stk_body(receiver.url)
    for token in ("", "made-up"):
        answer = sandbox.call("/mpesa/stkpush/v1/processrequest", body, token=token)
        assert answer.status_code == 401
        assert answer.json()["errorCode"] == "404.001.03"
    token = sandbox.token()
    assert sandbox.call("/mpesa/stkpush/v1/processrequest", body, token=token).status_code == 200
    wait_until(lambda: sandbox.call("/mpesa/stkpush/v1/processrequest", body, token=token).status_code == 401,
               timeout=5, what="the one-second token to expire")


def test_the_token_lifetime_and_more_apps_are_set_through_the_control_api(daraja_sandbox):
    sandbox = daraja_sandbox()
    sandbox.configure(token_expires_in=30)
    sandbox.control("POST", "credentials", {"consumer_key": "merchant-2", "consumer_secret": "s2"}, expect=201)
    answer = _generate(sandbox, ("merchant-2", "s2"))
    assert answer.status_code == 200 and answer.json()["expires_in"] == "30"
    assert _generate(sandbox, (sandbox.consumer_key, sandbox.consumer_secret)).status_code == 200
    sandbox.control("POST", "reset", expect=204)
    assert _generate(sandbox, ("merchant-2", "s2")).status_code == 400
    assert sandbox.counters()["tokens_issued"] == 0


def test_the_app_and_short_code_are_the_ones_the_sandbox_was_started_with(daraja_sandbox, receiver):
    sandbox = daraja_sandbox(consumer_key="shop-7", consumer_secret="s7", shortcode="600777", passkey="pk7",
                             callback_delay=0)
    assert _generate(sandbox, ("payhook-sandbox-key", "payhook-sandbox-secret")).status_code == 400
    answer = sandbox.stk_push(receiver.url, PartyB=600777)
    assert receiver.wait_for(1)[0].json()["Body"]["stkCallback"]["CheckoutRequestID"] == answer["CheckoutRequestID"]
    assert sandbox.control("GET", "config")["shortcodes"] == ["600777"]
