"""The Daraja sandbox as Safaricom in front of the real webhook-service: an STK Push's callback reaches
Payhook over HTTP and is delivered to the merchant; a dropped one arrives late and is delivered then."""

from __future__ import annotations

import pytest
from standardwebhooks.webhooks import Webhook
from werkzeug.serving import make_server

from factories import merchant_with_endpoints, stk_url
from support import serving, wait_until


@pytest.fixture
def webhook_server(webhook_app):
    """The webhook-service app served over real HTTP (a threaded werkzeug server), as the sandbox must POST."""
    server = make_server("127.0.0.1", 0, webhook_app, threaded=True)
    thread = serving(server)
    thread.start()
    yield f"http://127.0.0.1:{server.port}"
    server.shutdown()
    thread.join(10)


def test_sandbox_callbacks_are_recorded_and_delivered_and_a_dropped_one_when_it_comes(
        daraja_sandbox, webhook_server, store, receiver, delivery_worker):
    merchant, [endpoint] = merchant_with_endpoints(store, receiver.url, email=None)
    delivery_worker()
    sandbox = daraja_sandbox(callback_delay=0.1)
    callback_url = webhook_server + stk_url(merchant)

    paid = sandbox.stk_push(callback_url, Amount=320)["CheckoutRequestID"]
    cancelled = sandbox.stk_push(callback_url, AccountReference="SBX1032")["CheckoutRequestID"]
    dropped = sandbox.stk_push(callback_url, AccountReference="SBX0D")["CheckoutRequestID"]
    wait_until(lambda: sandbox.counters()["callbacks"]["sent"] == 2, what="two callbacks accepted by Payhook")
    webhooks = {}
    for webhook in receiver.wait_for(2):
        payload = Webhook(endpoint.secret).verify(webhook.body, webhook.headers)
        webhooks[payload["data"]["raw"]["Body"]["stkCallback"]["CheckoutRequestID"]] = payload["data"]
    assert set(webhooks) == {paid, cancelled}
    receipts = {p["CheckoutRequestID"]: p["MpesaReceiptNumber"] for p in sandbox.pushes()}
    assert (webhooks[paid]["status"], webhooks[paid]["amount"], webhooks[paid]["receipt"]) == (
        "succeeded", "320.00", receipts[paid])
    assert webhooks[cancelled]["status"] == "failed"

    # The dropped push is final at Daraja all along; its callback, sent late, is delivered like any other.
    assert sandbox.stk_query(dropped).json()["ResultCode"] == "0"
    assert sandbox.send_callback(dropped)["status"] == 200
    late = receiver.wait_for(3)[-1]
    assert Webhook(endpoint.secret).verify(late.body, late.headers)["data"]["receipt"] == receipts[dropped]
    # The same callback again is a duplicate: accepted, never delivered twice.
    assert sandbox.send_callback(dropped)["status"] == 200
    wait_until(lambda: len(sandbox.callbacks()) == 4, what="the duplicate sent")
    with pytest.raises(AssertionError):
        receiver.wait_for(4, timeout=1)
