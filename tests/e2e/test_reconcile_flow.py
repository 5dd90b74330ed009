"""Issue #23's acceptance on real processes: the Daraja sandbox, the webhook-service under gunicorn (two web
processes, so two reconcilers), a delivery-worker and a receiver. 200 STK Pushes through the API with mixed
outcomes, a fifth of the callbacks dropped and some late: the receiver gets exactly one webhook per push
with the right status, the dropped ones from the query (``data.source`` ``query``, the others ``callback``),
and callbacks arriving after reconciliation change nothing. Queries and OAuth tokens are counted at the sandbox."""

from __future__ import annotations

import concurrent.futures
import time

from sqlalchemy import func, select
from standardwebhooks.webhooks import Webhook

from factories import api_key, merchant_with_endpoints
from payhook_shared.store import Event, PaymentIntent
from support import free_port, wait_until
from support_processes import answers, call, service_envs, start, stop

PUSHES = 200
RECONCILE_AFTER = 1.5


def test_200_pushes_with_dropped_and_late_callbacks_give_one_webhook_each(
        database_url, redis_url, store, receiver, daraja_sandbox, tmp_path):
    sandbox = daraja_sandbox(callback_delay=0.3, drop_ratio=0.2, late_ratio=0.1, late_delay=6, seed=23)
    sandbox.configure(outcomes={"0": 6, "1032": 2, "1037": 1, "2001": 1})
    merchant, [endpoint] = merchant_with_endpoints(store, receiver.url, email=None)
    headers = api_key(store, merchant.id)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    common, web_env = service_envs(database_url, redis_url, tmp_path, port, sandbox.url,
                                   RECONCILE_AFTER=str(RECONCILE_AFTER), RECONCILE_INTERVAL="0.2",
                                   RECONCILE_BACKOFF="0.3", RECONCILE_BACKOFF_MAX="1")
    web = start("payhook-webhook-service", web_env, tmp_path / "web.log")
    worker = start("payhook-delivery-worker", {**common, "POOL": "all", "THREADS": "8", "HEALTH_PORT": "0",
                                                "SWEEP_INTERVAL": "0.5"}, tmp_path / "delivery.log")
    try:
        wait_until(lambda: answers(f"{base}/health/ready"), timeout=30, what="the webhook-service ready")
        status, _ = call("PUT", f"{base}/v1/merchants/{merchant.id}/daraja-credentials", headers, {
            "environment": "sandbox", "shortcode": sandbox.shortcode, "consumer_key": sandbox.consumer_key,
            "consumer_secret": sandbox.consumer_secret, "passkey": sandbox.passkey})
        assert status == 200

        def push(i: int) -> str:
            status, body = call("POST", f"{base}/v1/mpesa/stk-push", headers, {
                "amount": 10 + i, "phone": "0708374149", "account_reference": f"INV-{i}", "description": "Order",
                "idempotency_key": f"order-{i}"})
            assert status == 201, body
            return body["checkout_request_id"]

        started = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            pushed = list(pool.map(push, range(PUSHES)))
        pushed_in = time.monotonic() - started

        received = receiver.wait_for(PUSHES, timeout=40)
        delivered_in = time.monotonic() - started
        webhooks: dict[str, list[dict]] = {}
        for request in received:
            data = Webhook(endpoint.secret).verify(request.body, request.headers)["data"]
            webhooks.setdefault(data["reference"], []).append(data)
        pushes = {p["CheckoutRequestID"]: p for p in sandbox.pushes()}
        fates = {fate: [c for c in pushed if pushes[c]["fate"] == fate] for fate in ("callback", "drop", "late")}
        assert len(fates["drop"]) >= PUSHES // 10 and fates["late"], "the mix must drop and delay some callbacks"
        assert {pushes[c]["ResultCode"] for c in fates["drop"]} > {"0"}, "dropped payments, and dropped failures"
        assert sorted(webhooks) == sorted(pushed)
        assert all(len(found) == 1 for found in webhooks.values())
        for checkout_id in pushed:
            data, code = webhooks[checkout_id][0], pushes[checkout_id]["ResultCode"]
            assert (data["status"], data["result_code"]) == ("succeeded" if code == "0" else "failed", code)
            if code == "0":
                assert float(data["amount"]) == float(pushes[checkout_id]["amount"])
        for checkout_id in pushed:
            queried = checkout_id in fates["drop"] + fates["late"]
            assert webhooks[checkout_id][0]["source"] == ("query" if queried else "callback")
        # Within RECONCILE_AFTER and the query time of the last push, on a shared two-core machine.
        assert delivered_in < pushed_in + RECONCILE_AFTER + 15

        # Each reconciled push queried once, by one of the two web processes at a time; one token for all.
        counters = sandbox.counters()
        for checkout_id in fates["drop"] + fates["late"]:
            assert counters["queries"][checkout_id] == 1
        assert set(counters["max_concurrent_queries"].values()) == {1}
        assert counters["tokens_issued"] == 1

        # The late callbacks arrive after their reconciliation; the dropped ones are sent late on purpose.
        wait_until(lambda: sandbox.counters()["callbacks"]["pending"] == 0, timeout=15, what="the late callbacks")
        for checkout_id in fates["drop"]:
            assert sandbox.send_callback(checkout_id)["status"] == 200
        time.sleep(1.5)
        assert len(receiver.received) == PUSHES
        with store.read() as session:
            assert session.scalar(select(func.count()).select_from(Event)) == PUSHES
            states = dict(session.execute(select(PaymentIntent.state, func.count())
                                          .group_by(PaymentIntent.state)).all())
        paid = sum(1 for c in pushed if pushes[c]["ResultCode"] == "0")
        assert states == {"completed": paid, "failed": PUSHES - paid}
    finally:
        stop(worker)
        stop(web)
