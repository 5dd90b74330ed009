"""``payhook events`` and ``payhook trigger --endpoint`` against the real stack.

The webhook-service runs under gunicorn, the delivery-worker is the real one
(``delivery_worker``), the merchant's endpoints are real receivers, and every
command is the installed ``payhook`` in a subprocess, so its exit codes are the
ones a script sees.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from factories import api_key, merchant_with_endpoints
from support import Receiver, free_port, wait_until

pytestmark = pytest.mark.slow  # gunicorn, workers and the CLI in subprocesses in every test

BIN = Path(sys.executable).parent


def _key(store, merchant_id: str) -> str:
    return api_key(store, merchant_id)["Authorization"].removeprefix("Bearer ")


def _payhook(base: str, key: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "payhook"), *args], capture_output=True, text=True, timeout=90,
                          env={**os.environ, "PAYHOOK_API_URL": base, "PAYHOOK_API_KEY": key})


def _listed(base: str, key: str, *args: str) -> list[dict]:
    done = _payhook(base, key, "events", "list", "--json", *args)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


@pytest.fixture
def refusing():
    server = Receiver().start()
    server.respond = lambda request: (503, {}, b"down for maintenance")
    yield server
    server.stop()


def test_a_delivered_callback_is_listed_shown_and_resent_with_the_same_webhook_id(store, web_server, receiver,
                                                                                 delivery_worker):
    base = web_server()
    merchant, [endpoint] = merchant_with_endpoints(store, receiver.url)
    delivery_worker()
    key = _key(store, merchant.id)
    to = f"{base}/cb/{merchant.id}/{merchant.callback_token}"
    posted = _payhook(base, key, "simulate", "stk", "--amount", "250.50", "--phone", "254712345678", "--to", to)
    assert posted.returncode == 0, posted.stderr
    [first] = receiver.wait_for(1)
    [event] = wait_until(lambda: [e for e in _listed(base, key) if e["delivery_status"] == "delivered"],
                         what="the event listed as delivered")
    assert (event["type"], event["status"], event["amount"], event["currency"]) == (
        "mpesa.stk_push", "succeeded", "250.50", "KES")
    assert event["id"] == first.headers["webhook-id"]

    # Filters reach the API; one line of text per event.
    assert [e["id"] for e in _listed(base, key, "--receipt", event["receipt"], "--delivery", "delivered")] == [
        event["id"]]
    assert _listed(base, key, "--delivery", "dead") == [] and _listed(base, key, "--phone-suffix", "9999") == []
    text = _payhook(base, key, "events", "list", "--type", "mpesa.stk_push")
    [line] = text.stdout.splitlines()
    for part in ("mpesa.stk_push", "succeeded", "KES 250.50", event["receipt"], "delivered", event["id"]):
        assert part in line

    shown = _payhook(base, key, "events", "show", event["id"])
    assert shown.returncode == 0, shown.stderr
    assert f"-> {endpoint.id}  done" in shown.stdout and "#1" in shown.stdout and "200  success" in shown.stdout

    resent = _payhook(base, key, "events", "resend", event["id"], "--endpoint", endpoint.id)
    assert resent.returncode == 0, resent.stderr
    assert resent.stdout.strip() == f"Resending {event['id']} to {endpoint.id}: queued"
    _, again = receiver.wait_for(2)
    assert again.headers["webhook-id"] == first.headers["webhook-id"] and again.body == first.body

    def second_attempt() -> dict | None:
        done = _payhook(base, key, "events", "show", event["id"], "--json")
        detail = json.loads(done.stdout)
        return detail if len(detail["deliveries"][0]["attempt_log"]) == 2 else None

    detail = wait_until(second_attempt, what="the resend's attempt recorded")
    assert [a["number"] for a in detail["deliveries"][0]["attempt_log"]] == [1, 2]
    assert json.loads(detail["raw_payload"])["Body"]["stkCallback"]["ResultCode"] == 0


def test_lists_page_with_limit_after_and_all(store, web_server):
    base = web_server()
    merchant, _ = merchant_with_endpoints(store)
    key = _key(store, merchant.id)
    triggered = []
    for amount in ("1", "2", "3"):
        done = _payhook(base, key, "trigger", "shop.payment", "--amount", amount, "--json")
        assert done.returncode == 0, done.stderr
        triggered.append(json.loads(done.stdout)["id"])
    newest_first = triggered[::-1]

    cut = _payhook(base, key, "events", "list", "--limit", "2", "--json")
    assert [json.loads(line)["id"] for line in cut.stdout.splitlines()] == newest_first[:2]
    assert f"--after {newest_first[1]}" in cut.stderr
    assert [e["id"] for e in _listed(base, key, "--after", newest_first[1])] == newest_first[2:]
    every = _listed(base, key, "--all")
    assert [e["id"] for e in every] == newest_first
    assert {e["delivery_status"] for e in every} == {"none"}  # no endpoint took them
    assert [e["amount"] for e in _listed(base, key, "--type", "shop.payment", "--status", "succeeded")] == [
        "3.00", "2.00", "1.00"]


def test_trigger_to_a_working_and_a_refusing_endpoint(store, web_server, receiver, refusing, delivery_worker):
    base = web_server()
    merchant, [working, failing] = merchant_with_endpoints(store, receiver.url, refusing.url)
    delivery_worker()
    key = _key(store, merchant.id)

    listed = _payhook(base, key, "trigger", "--list", "--json")
    assert listed.returncode == 0, listed.stderr
    types = [json.loads(line)["type"] for line in listed.stdout.splitlines()]
    assert "mpesa.stk_push" in types and "order.paid" in types

    done = _payhook(base, key, "trigger", "mpesa.stk_push", "--endpoint", working.id)
    assert done.returncode == 0, done.stderr
    assert f"mpesa.stk_push -> {working.id}: delivered, 200 success" in done.stdout
    [request] = receiver.received  # that endpoint only
    assert request.json()["test"] is True and refusing.received == []

    refused = _payhook(base, key, "trigger", "order.paid", "--endpoint", failing.id, "--json")
    assert refused.returncode == 1
    answer = json.loads(refused.stdout)
    assert (answer["delivered"], answer["status"], answer["category"]) == (False, 503, "server_error")
    assert len(refusing.received) == 1 and len(receiver.received) == 1
    text = _payhook(base, key, "trigger", "order.paid", "--endpoint", failing.id)
    assert text.returncode == 1 and "NOT delivered, 503 server_error" in text.stdout
    assert "response: down for maintenance" in text.stdout

    unknown_type = _payhook(base, key, "trigger", "nope.nothing", "--endpoint", working.id)
    assert unknown_type.returncode == 1 and "type" in unknown_type.stderr
    # The catalog's example is sent as it is: an amount with --endpoint is a usage error, sent nowhere.
    assert _payhook(base, key, "trigger", "mpesa.stk_push", "--endpoint", working.id, "--amount", "5").returncode == 2
    assert len(receiver.received) == 1


def test_unknown_and_another_merchants_ids_exit_1(store, web_server, receiver, delivery_worker):
    base = web_server()
    mine, _ = merchant_with_endpoints(store)
    theirs, [their_endpoint] = merchant_with_endpoints(store, receiver.url)
    delivery_worker()
    their_key, my_key = _key(store, theirs.id), _key(store, mine.id)
    done = _payhook(base, their_key, "trigger", "mpesa.stk_push", "--endpoint", their_endpoint.id, "--json")
    assert done.returncode == 0, done.stderr
    their_event = json.loads(done.stdout)["event_id"]
    assert len(receiver.received) == 1

    for args in (["events", "show", their_event], ["events", "show", "evt_00000000"],
                 ["events", "resend", their_event], ["events", "resend", "evt_00000000"],
                 ["trigger", "mpesa.stk_push", "--endpoint", their_endpoint.id],
                 ["events", "list", "--merchant-id", theirs.id]):
        refused = _payhook(base, my_key, *args)
        assert refused.returncode == 1, (args, refused.stdout, refused.stderr)
        assert refused.stderr.startswith("Error: 404 no "), refused.stderr
    as_json = json.loads(_payhook(base, my_key, "events", "show", their_event, "--json").stdout)
    assert as_json["status"] == 404 and as_json["answer"]["error"]["message"] == f"no event {their_event}"
    assert _listed(base, my_key) == []
    assert len(receiver.received) == 1  # nothing resent, nothing tested

    assert _payhook(base, "phk_wrong", "events", "list").returncode == 1
    assert _payhook(base, my_key, "events", "list", "--since", "yesterday").returncode == 1  # the API's 400
    assert _payhook(base, my_key, "events", "list", "--delivery", "lost").returncode == 2
    assert _payhook(base, my_key, "trigger").returncode == 2
    assert _payhook(f"http://127.0.0.1:{free_port()}", my_key, "events", "list").returncode == 3


def test_the_new_commands_have_help():
    for command in (["events"], ["events", "list"], ["events", "show"], ["events", "resend"], ["trigger"]):
        done = subprocess.run([str(BIN / "payhook"), *command, "--help"], capture_output=True, text=True, timeout=30)
        assert done.returncode == 0 and "Usage: payhook" in done.stdout, command
