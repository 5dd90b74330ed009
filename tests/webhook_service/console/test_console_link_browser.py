"""In a real browser: a merchant asks for a sign-in link, the mail-worker sends it over real SMTP, the
link from that email signs the merchant in, and the merchant changes its settings.
"""

from __future__ import annotations

import json
import re

import pytest
from sqlalchemy import select

from factories import merchant_with_endpoints
from payhook_shared.store import Email, Merchant
from support import wait_until

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def test_a_merchant_signs_in_with_an_emailed_link_and_changes_its_settings(
        console_server, smtp_server, mail_worker, page, screenshot):
    store = console_server.app.extensions["payhook.store"]
    merchant, _ = merchant_with_endpoints(store, "https://shop.example/hooks", email="owner@shop.test")
    mail_worker(smtp_url=smtp_server.url)

    page.goto(console_server.url + "/console/login")
    page.get_by_label("Email address").fill("owner@shop.test")
    page.get_by_role("button", name="Email me a sign-in link").click()
    assert "a sign-in link is on its way" in page.get_by_role("status").inner_text()
    screenshot(page, "sign-in")

    wait_until(lambda: smtp_server.messages, what="the sign-in email")
    [(_, recipients, mail)] = smtp_server.messages
    assert recipients == ["owner@shop.test"]
    text = next(p for p in mail.walk() if p.get_content_type() == "text/plain").get_payload(decode=True).decode()
    [link] = re.findall(rf"{re.escape(console_server.url)}/console/sign-in/[A-Za-z0-9_-]+", text)

    page.goto(link)
    assert "owner@shop.test" in page.locator("main").inner_text()
    assert "Test Shop" in page.locator("main").inner_text()
    screenshot(page, "sign-in-link")
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(console_server.url + "/console/")
    assert page.get_by_text(f"Merchant {merchant.id} · owner@shop.test").is_visible()

    page.get_by_role("link", name="Settings").click()
    page.get_by_label("Kind of event").first.fill("mpesa.stk_push")
    page.get_by_label("Status").first.select_option("failed")
    page.get_by_label("Priority").first.select_option("normal")
    page.get_by_label("gentle").check()
    page.get_by_label("Send to you, for every failed payment").check()
    page.get_by_label("Payment received: recipients").fill("owner@shop.test, books@shop.test")
    page.get_by_label("Keep events for (days)").fill("365")
    page.get_by_role("button", name="Save settings").click()
    assert page.get_by_role("status").inner_text().startswith("Settings of Test Shop saved")
    with store.read() as session:
        settings = session.get(Merchant, merchant.id).settings
    assert settings["priority_rules"] == [{"event_type": "mpesa.stk_push", "status": "failed", "priority": "normal"}]
    assert settings["retry"] == {"profile": "gentle"} and settings["retention"] == {"events_days": 365}
    assert settings["notifications"]["payment_failed"]["enabled"] is True
    screenshot(page, "settings")

    page.set_viewport_size({"width": 360, "height": 740})
    page.reload()
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    screenshot(page, "settings-360px")

    with store.read() as session:  # the mail-worker minted the token as it sent: the store never held it
        assert link.rsplit("/", 1)[1] not in json.dumps(session.scalars(select(Email.context)).one())
    page.goto(link)
    assert "has been used already" in page.get_by_role("alert").inner_text()
    page.goto(console_server.url + "/console/audit")
    assert page.get_by_role("cell", name="update_settings").is_visible()
    assert page.dialogs == []
