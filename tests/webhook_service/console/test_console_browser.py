"""The console in a real browser: Debian's chromium, driven by Playwright, against a real server.

Operators find a payment by its receipt, read its delivery attempts and retry
a dead letter that a real delivery-worker then delivers to a real receiver;
merchants see only their own events.
"""

from __future__ import annotations

import json
import time

import pytest
import urllib3
from sqlalchemy import select

from factories import fixture_json, merchant_with_endpoints, stk_url
from payhook_shared.store import Delivery
from payhook_webhook.auth import create_api_key

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

HTTP = urllib3.PoolManager()


def post_callback(server, merchant, payload: dict) -> None:
    response = HTTP.request("POST", server.url + stk_url(merchant), body=json.dumps(payload).encode(),
                            headers={"Content-Type": "application/json"})
    assert response.status == 200, response.data


def sign_in(page, server, key: str) -> None:
    page.goto(server.url + "/console/login")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(server.url + "/console/")


def wait_for_state(store, delivery_id: str, state: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with store.read() as session:
            if session.get(Delivery, delivery_id).state == state:
                return
        time.sleep(0.1)
    raise AssertionError(f"delivery {delivery_id} never became {state}")


def test_operator_finds_a_payment_reads_its_attempts_and_retries_the_dead_letter(
        console_server, delivery_worker, receiver, page, screenshot):
    store = console_server.app.extensions["payhook.store"]
    merchant, [endpoint] = merchant_with_endpoints(store, receiver.url)
    receiver.respond = lambda r: (500, {}, b'{"error":"database locked"}')
    delivery_worker(retry_schedule=(), circuit_threshold=100)
    post_callback(console_server, merchant, fixture_json("mpesa/stk_success.json"))
    with store.read() as session:
        delivery_id = session.scalar(select(Delivery.id).where(Delivery.merchant_id == merchant.id))
    wait_for_state(store, delivery_id, "dead")
    _, key = create_api_key(store, None, "ops")

    sign_in(page, console_server, key)
    assert page.get_by_text("callbacks in").is_visible()
    screenshot(page, "overview")

    page.get_by_role("link", name="Events", exact=True).click()
    page.get_by_label("Receipt or transaction id").fill("NLJ7RT61SV")
    page.get_by_role("button", name="Filter").click()
    rows = page.locator("table.list tbody tr")
    assert rows.count() == 1 and "NLJ7RT61SV" in rows.inner_text()
    screenshot(page, "events")
    rows.get_by_role("link").click()
    assert page.locator("#raw-payload").inner_text().startswith('{\n  "Body"')
    screenshot(page, "event")

    page.get_by_role("link", name=delivery_id).click()
    attempt = page.locator("ol.timeline li").first
    assert "500" in attempt.inner_text() and "server_error" in attempt.inner_text()
    assert "database locked" in attempt.locator("pre").inner_text()
    screenshot(page, "delivery")

    page.get_by_role("link", name="Dead letters").click()
    page.get_by_label(f"Select {delivery_id}").check()
    screenshot(page, "dead-letters")
    receiver.respond = lambda r: (200, {}, b'{"ok":true}')
    page.get_by_role("button", name="Retry selected").click()
    assert page.get_by_role("status").inner_text().startswith("1 dead letter put back")
    wait_for_state(store, delivery_id, "done")
    page.goto(f"{console_server.url}/console/deliveries/{delivery_id}")
    assert page.locator("#delivery-state").inner_text() == "done"
    assert "200" in page.locator("ol.timeline li").nth(1).inner_text()
    assert len(receiver.received) == 2

    page.get_by_role("link", name="Endpoints").click()
    assert page.locator(f"tr#{endpoint.id}").get_by_text("closed").is_visible()
    screenshot(page, "endpoints")
    page.get_by_role("link", name="Callback URLs").click()
    assert page.get_by_role("textbox", name="stk", exact=True).input_value().endswith("/stk")
    screenshot(page, "callback-urls")
    page.get_by_role("link", name="Audit log").click()
    assert page.get_by_role("cell", name="retry_selected").is_visible()

    page.set_viewport_size({"width": 360, "height": 740})
    page.goto(f"{console_server.url}/console/events")
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    screenshot(page, "events-360px")
    assert page.dialogs == []


def test_a_merchant_sees_only_its_own_events(console_server, receiver, page, screenshot):
    store = console_server.app.extensions["payhook.store"]
    mine, _ = merchant_with_endpoints(store, receiver.url)
    theirs, _ = merchant_with_endpoints(store, receiver.url)
    post_callback(console_server, mine, fixture_json("mpesa/stk_success.json"))
    other = fixture_json("mpesa/stk_success.json")
    other["Body"]["stkCallback"]["CheckoutRequestID"] = "ws_CO_other"
    post_callback(console_server, theirs, other)
    with store.read() as session:
        ids = dict(session.execute(select(Delivery.merchant_id, Delivery.event_id)).all())
    _, key = create_api_key(store, mine.id, "shop")

    sign_in(page, console_server, key)
    page.get_by_role("link", name="Events", exact=True).click()
    listing = page.locator("table.list tbody").inner_text()
    assert ids[mine.id] in listing and ids[theirs.id] not in listing
    assert page.locator("#merchant").count() == 0  # no merchant picker for a merchant key
    response = page.goto(f"{console_server.url}/console/events/{ids[theirs.id]}")
    assert response.status == 404
    assert page.get_by_role("heading", name="Not found").is_visible()
    assert page.goto(f"{console_server.url}/console/events/{ids[mine.id]}").status == 200
