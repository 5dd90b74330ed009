"""Issue #23's QueueTimeOut acceptance on real processes: the Daraja sandbox, the webhook-service under gunicorn
(two web processes, so two reconcilers), a delivery-worker and a receiver. B2C payments whose results come as
QueueTimeOuts are each asked about once with Transaction Status (counted at the sandbox), and their
``mpesa.b2c.resolved`` webhooks reach the receiver with the right status, referencing the QueueTimeOut's
event; a QueueTimeOut that arrives while the sandbox is down is resolved once it is back. Nothing is sent
twice, and every body validates against the event catalog."""

from __future__ import annotations

import collections

import jsonschema
from payhook_cli import daraja as generator
from sqlalchemy import select
from standardwebhooks.webhooks import Webhook

from factories import api_key, merchant_with_endpoints
from payhook_shared import catalog
from payhook_shared.store import StatusCheck
from support import free_port, wait_until
from support_processes import answers, call, service_envs, start, stop
from support_reconcile import INITIATOR

PAID, REFUSED = [f"ph-paid-{i}" for i in range(4)], [f"ph-refused-{i}" for i in range(2)]


def test_b2c_queue_timeouts_are_resolved_once_each_even_across_a_sandbox_outage(
        database_url, redis_url, store, receiver, daraja_sandbox, tmp_path):
    sandbox = daraja_sandbox(callback_delay=0.2, seed=23)
    merchant, [endpoint] = merchant_with_endpoints(store, receiver.url, email=None)
    headers = api_key(store, merchant.id)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    # An answer takes 0.2 s to come; a check looks for it again only after RECONCILE_BACKOFF (3 s) unless its
    # arrival wakes the check, so a second query of one transaction would show a check that did not wait.
    common, web_env = service_envs(database_url, redis_url, tmp_path, port, sandbox.url, DARAJA_CONNECT_TIMEOUT="1",
                                   RECONCILE_AFTER="1", RECONCILE_INTERVAL="0.2", RECONCILE_BACKOFF="3",
                                   RECONCILE_BACKOFF_MAX="3")
    web = start("payhook-webhook-service", web_env, tmp_path / "web.log")
    worker = start("payhook-delivery-worker", {**common, "POOL": "all", "THREADS": "8", "HEALTH_PORT": "0",
                                               "SWEEP_INTERVAL": "0.5"}, tmp_path / "delivery.log")
    try:
        wait_until(lambda: answers(f"{base}/health/ready"), timeout=30, what="the webhook-service ready")
        status, _ = call("PUT", f"{base}/v1/merchants/{merchant.id}/daraja-credentials", headers, {
            "environment": "sandbox", "shortcode": sandbox.shortcode, "consumer_key": sandbox.consumer_key,
            "consumer_secret": sandbox.consumer_secret, "passkey": sandbox.passkey, **INITIATOR})
        assert status == 200
        status, body = call("GET", f"{base}/v1/merchants/{merchant.id}/callback-urls", headers, {})
        urls = body["callback_urls"]

        # B2C payments made at the sandbox (as the merchant would), each result coming as a QueueTimeOut.
        for originator in PAID + REFUSED:
            answer = sandbox.call("/mpesa/b2c/v3/paymentrequest", {
                "OriginatorConversationID": originator, "InitiatorName": "testapi", "SecurityCredential": "c2VjcmV0",
                "CommandID": "BusinessPayment", "Amount": 250 if originator in PAID else 900, "PartyA": 600996,
                "PartyB": 254712345678, "Remarks": "SBX0T" if originator in PAID else "SBX2001T",
                "QueueTimeOutURL": urls["b2c-timeout"], "ResultURL": urls["b2c-result"], "Occassion": ""})
            assert answer.status_code == 200, answer.text
        originators = PAID + REFUSED
        # Per payment: the QueueTimeOut, the Transaction Status answer and the resolution.
        receiver.wait_for(3 * len(originators), timeout=30)
        counters = sandbox.counters()
        assert counters["status_queries"] == {o: 1 for o in originators}

        # Down: a QueueTimeOut arrives (Safaricom's, not the sandbox's); it is asked about only once Daraja is back.
        sandbox.stop()
        timeout = generator.build("b2c-timeout")
        timeout["Result"].update(OriginatorConversationID="ph-down", ConversationID="AG_20261207_down")
        status, _ = call("POST", urls["b2c-timeout"], {}, timeout)
        assert status == 200

        def tried_while_down() -> bool:
            with store.read() as session:
                check = session.scalars(select(StatusCheck).where(
                    StatusCheck.originator_conversation_id == "ph-down")).one_or_none()
            return check is not None and check.checks >= 1 and check.queries == 0

        wait_until(tried_while_down, timeout=20, what="the check tried while Daraja is down")
        sandbox.start()
        received = receiver.wait_for(3 * len(originators) + 3, timeout=30)
        assert sandbox.counters()["status_queries"] == {"ph-down": 1}

        bodies = [Webhook(endpoint.secret).verify(r.body, r.headers) for r in received]
        for body in bodies:
            entry = catalog.entry_for(body["type"], body["data"]["provider"])
            jsonschema.Draft202012Validator(entry.body_schema(), format_checker=jsonschema.FormatChecker()).validate(
                body)
        assert len({b["id"] for b in bodies}) == len(bodies), "nothing is sent twice"
        by_type = collections.defaultdict(list)
        for body in bodies:
            by_type[body["type"]].append(body)
        assert sorted(by_type) == ["mpesa.b2c", "mpesa.b2c.resolved", "mpesa.transaction_status"]
        timed_out = {b["data"]["provider_ids"]["OriginatorConversationID"]: b for b in by_type["mpesa.b2c"]}
        assert sorted(timed_out) == sorted(originators + ["ph-down"])
        assert {b["data"]["status"] for b in timed_out.values()} == {"unknown"}
        resolved = {b["data"]["provider_ids"]["OriginatorConversationID"]: b["data"]
                    for b in by_type["mpesa.b2c.resolved"]}
        assert sorted(resolved) == sorted(timed_out)
        for originator, data in resolved.items():
            assert data["details"]["original_event_id"] == timed_out[originator]["id"]
            assert data["source"] == "query" and data["details"]["queries"] == 1
        assert {o: (resolved[o]["status"], resolved[o]["amount"]) for o in PAID + REFUSED} == {
            **{o: ("succeeded", "250.00") for o in PAID}, **{o: ("failed", "900.00") for o in REFUSED}}
        # The restarted sandbox forgot the payment; it answers for an unknown one as completed.
        assert resolved["ph-down"]["status"] == "succeeded"
    finally:
        stop(worker)
        stop(web)
