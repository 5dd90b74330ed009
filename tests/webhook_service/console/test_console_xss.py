"""Stored XSS: hostile callback fields are shown as text on every console page, and no script runs."""

from __future__ import annotations

import json
import time

import pytest
import urllib3
from sqlalchemy import select

from factories import fixture_json, merchant_with_endpoints, stk_url
from payhook_shared.store import Delivery, Endpoint, Merchant
from payhook_webhook.auth import create_api_key

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

SCRIPT = "<script>window.__xss = 'script'</script>"
IMG = '"><img src=x onerror="window.__xss=\'img\'">'
LINK = "javascript:window.__xss='link'"


def hostile_callback() -> dict:
    payload = fixture_json("mpesa/stk_success.json")
    callback = payload["Body"]["stkCallback"]
    callback["MerchantRequestID"] = IMG
    callback["ResultDesc"] = SCRIPT
    items = callback["CallbackMetadata"]["Item"]
    for item in items:
        if item["Name"] == "MpesaReceiptNumber":
            item["Value"] = IMG
    items.append({"Name": "Note", "Value": LINK})
    return payload


def test_hostile_fields_are_text_and_never_run(console_server, delivery_worker, receiver, page):
    store = console_server.app.extensions["payhook.store"]
    merchant, [endpoint] = merchant_with_endpoints(store, receiver.url)
    with store.write() as session:
        session.get(Merchant, merchant.id).name = SCRIPT
        row = session.get(Endpoint, endpoint.id)
        row.description = IMG
    receiver.respond = lambda r: (500, {}, (SCRIPT + IMG).encode())
    delivery_worker(retry_schedule=(), circuit_threshold=1)
    response = urllib3.request("POST", console_server.url + stk_url(merchant),
                               body=json.dumps(hostile_callback()).encode(),
                               headers={"Content-Type": "application/json"})
    assert response.status == 200, response.data
    deadline = time.monotonic() + 15
    while True:
        with store.read() as session:
            delivery = session.scalar(select(Delivery).where(Delivery.merchant_id == merchant.id))
        if delivery.state == "dead" or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert delivery.state == "dead"
    # An endpoint URL is validated on entry; one stored by any other route is still only text.
    with store.write() as session:
        session.get(Endpoint, endpoint.id).url = LINK
    _, key = create_api_key(store, None, "ops")

    page.goto(console_server.url + "/console/login")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    pages = {
        "/console/": [],
        "/console/events": [IMG],
        f"/console/events/{delivery.event_id}": [SCRIPT, IMG, LINK],
        "/console/deliveries": [LINK],
        f"/console/deliveries/{delivery.id}": [LINK, SCRIPT + IMG],
        "/console/dead-letters": [LINK],
        "/console/endpoints": [SCRIPT, IMG, LINK],
        "/console/callback-urls": [SCRIPT],
    }
    for path, shown in pages.items():
        assert page.goto(console_server.url + path).status == 200, path
        text = page.locator("main").inner_text()
        for value in shown:
            assert value in text, (path, value)
        assert page.evaluate("typeof window.__xss") == "undefined", path
        assert page.locator("main img, main script").count() == 0, path
        assert page.locator("a[href^='javascript']").count() == 0, path
    assert page.dialogs == []
