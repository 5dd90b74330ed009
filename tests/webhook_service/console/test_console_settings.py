"""The settings page: one form, validated by the shared schema, saved, audited, and applied for real.

Each section is saved through the console, then shown to change what the
services do: the queue an event goes to, the emails the mail-worker sends,
the wait before a retry, and what retention purges.
"""

from __future__ import annotations

import datetime as dt
import html
from html.parser import HTMLParser

import pytest
from sqlalchemy import select, update

from factories import fixture_bytes, merchant_with_endpoints, stk_url
from payhook_shared import merchant_settings
from payhook_shared import retention
from payhook_shared.store import AuditEntry, Delivery, DeliveryAttempt, Email, Event, JobState, Merchant
from payhook_webhook.auth import create_api_key
from support import csrf_token, wait_until


@pytest.fixture
def console_app(console_app_with):
    return console_app_with(endpoint_allowlist=("127.0.0.0/8",))


def signed_in(app, merchant_id: str | None):
    """A test client signed in with a new key: an admin key, or ``merchant_id``'s."""
    _, key = create_api_key(app.extensions["payhook.store"], merchant_id, "console")
    client = app.test_client()
    token = csrf_token(client.get("/console/login").get_data(as_text=True))
    assert client.post("/console/login", data={"api_key": key, "csrf_token": token}).status_code == 302
    return client


class FormValues(HTMLParser):
    """What a browser would send for a page's form posting to ``action`` (the settings form by default):
    inputs, ticked boxes, selected options, text areas."""

    def __init__(self, action: str = "/console/settings"):
        super().__init__()
        self.action = action
        self.values: dict[str, str] = {}
        self._in_form = False
        self._select: str | None = None
        self._option: tuple[str | None, bool] | None = None
        self._text = ""
        self._textarea: str | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form":
            self._in_form = a.get("method") == "post" and a.get("action") == self.action
        elif not self._in_form:
            return
        elif tag == "input" and "name" in a:
            if a.get("type") not in ("checkbox", "radio"):
                self.values[a["name"]] = a.get("value", "")
            elif "checked" in a:
                self.values[a["name"]] = a.get("value", "on")
        elif tag == "select":
            self._select = a["name"]
        elif tag == "textarea" and "name" in a:
            self._textarea, self.values[a["name"]] = a["name"], ""
        elif tag == "option" and self._select:
            self._option, self._text = (a.get("value"), "selected" in a), ""

    def handle_data(self, data):
        if self._textarea is not None:
            self.values[self._textarea] += data
        if self._option is not None:
            self._text += data

    def handle_endtag(self, tag):
        if tag == "option" and self._option is not None:
            value, selected = self._option
            if selected or self._select not in self.values:  # the first option unless one is selected
                self.values[self._select] = value if value is not None else self._text.strip()
            self._option = None
        elif tag == "select":
            self._select = None
        elif tag == "textarea":
            self._textarea = None
        elif tag == "form":
            self._in_form = False


def save(client, merchant_id: str, **fields):
    """Post the settings form as a browser would: the page's current values, with ``fields`` changed.

    A field given as ``None`` is left out, as an unticked box is.
    """
    parser = FormValues()
    parser.feed(client.get(f"/console/settings?merchant={merchant_id}").get_data(as_text=True))
    form = {**parser.values, **fields}
    return client.post("/console/settings", data={k: v for k, v in form.items() if v is not None})


def stored(store, merchant_id: str) -> dict:
    with store.read() as session:
        return session.get(Merchant, merchant_id).settings


def test_a_merchant_saves_its_settings_and_the_change_is_audited(console_app):
    store = console_app.extensions["payhook.store"]
    merchant, _ = merchant_with_endpoints(store, "https://shop.example/a", email="owner@shop.test")
    client = signed_in(console_app, merchant.id)
    page = client.get("/console/settings")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    for label in ("Kind of event", "Retry profile", "Payment received: recipients", "Keep events for (days)"):
        assert label in html
    assert 'placeholder="owner@shop.test"' in html and 'id="retry-standard" checked' in html

    response = save(client, merchant.id, **{
        "rule-0-event_type": "mpesa.stk_push", "rule-0-status": "failed", "rule-0-priority": "low",
        "retry-profile": "aggressive", "notice-payment_failed-enabled": "on",
        "notice-payment_received-recipients": "owner@shop.test, books@shop.test",
        "retention-events_days": "365"})
    assert response.status_code == 302
    flash = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "Settings of Test Shop saved: notifications, priority rules, retention, retry changed." in flash
    settings = stored(store, merchant.id)
    assert settings["priority_rules"] == [{"event_type": "mpesa.stk_push", "status": "failed", "priority": "low"}]
    assert settings["retry"] == {"profile": "aggressive"} and settings["retention"] == {"events_days": 365}
    assert settings["notifications"]["payment_received"] == {
        "enabled": True, "recipients": ["owner@shop.test", "books@shop.test"]}
    assert settings["notifications"]["payment_failed"] == {"enabled": True}
    assert merchant_settings.view(settings) == {**merchant_settings.view(None), **settings}  # what the services read back

    assert save(client, merchant.id).status_code == 302  # the page as shown, saved again: nothing changes
    with store.read() as session:
        entries = session.scalars(select(AuditEntry).where(AuditEntry.action == "update_settings")).all()
    assert len(entries) == 1 and entries[0].target == merchant.id
    assert set(entries[0].details["changes"]) == {"priority_rules", "retry", "notifications", "retention"}

    response = save(client, merchant.id, **{"rule-0-remove": "on"})
    assert "priority_rules" not in stored(store, merchant.id)


def test_refused_values_are_named_and_nothing_is_saved(console_app):
    store = console_app.extensions["payhook.store"]
    merchant, _ = merchant_with_endpoints(store, "https://shop.example/a")
    client = signed_in(console_app, merchant.id)
    response = save(client, merchant.id, **{
        "rule-0-event_type": "shop.refund", "rule-0-priority": "", "retry-profile": "eager",
        "notice-payment_received-recipients": "owner@shop.test, nobody",
        "retention-raw_payload_days": "120", "retention-events_days": "60"})
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert "Nothing was saved" in html
    for problem in ("rule 1: priority: Missing data for required field.", "retry.profile: Must be one of",
                    "notifications.payment_received.recipients.1: Not a valid email address.",
                    "retention.raw_payload_days: must not exceed events_days"):
        assert problem in html, problem
    assert 'value="shop.refund"' in html  # what was typed stays in the form
    assert stored(store, merchant.id) == {}
    assert client.post("/console/settings", data={"merchant": merchant.id}).status_code == 403  # no CSRF token


@pytest.mark.parametrize("address", ["owner@localhost", '"owner shop"@shop.test'])
def test_an_address_the_mail_worker_refuses_is_refused_naming_the_field(console_app, address):
    store = console_app.extensions["payhook.store"]
    merchant, _ = merchant_with_endpoints(store, "https://shop.example/a")
    client = signed_in(console_app, merchant.id)
    for field, problem in [("notice-receipt-fallback_email", "notifications.receipt.fallback_email: "),
                           ("notice-payment_received-recipients", "notifications.payment_received.recipients.0: ")]:
        response = save(client, merchant.id, **{field: address})
        assert response.status_code == 400
        assert f"{problem}Not a valid email address." in html.unescape(response.get_data(as_text=True))
    assert stored(store, merchant.id) == {}


def test_scope_an_operator_picks_a_merchant_who_sees_only_its_own(console_app):
    store = console_app.extensions["payhook.store"]
    mine, _ = merchant_with_endpoints(store, "https://shop.example/a")
    theirs, _ = merchant_with_endpoints(store, "https://shop.example/b")
    operator = signed_in(console_app, None)
    assert "Choose a merchant" in operator.get("/console/settings").get_data(as_text=True)
    assert save(operator, theirs.id, **{"retry-profile": "gentle"}).status_code == 302
    assert stored(store, theirs.id) != {} and stored(store, mine.id) == {}

    merchant = signed_in(console_app, mine.id)
    assert merchant.get(f"/console/settings?merchant={theirs.id}").status_code == 200  # its own, whatever it asks
    assert f"Settings of Test Shop <small>{mine.id}" in merchant.get(
        f"/console/settings?merchant={theirs.id}").get_data(as_text=True)
    token = csrf_token(merchant.get("/console/settings").get_data(as_text=True))
    merchant.post("/console/settings", data={"csrf_token": token, "merchant": theirs.id, "retry-profile": "fast"})
    assert stored(store, theirs.id)["retry"] == {"profile": "gentle"}
    assert stored(store, mine.id)["retry"] == {"profile": "fast"}


# Each setting changes what the services do ---------------------------------------------------------

def test_a_priority_rule_changes_the_queue_a_callback_goes_to(console_app, redis_client):
    store = console_app.extensions["payhook.store"]
    merchant, _ = merchant_with_endpoints(store, "https://shop.example/a")
    client = signed_in(console_app, merchant.id)
    callback = fixture_bytes("mpesa/stk_success.json")
    client.post(stk_url(merchant), data=callback, content_type="application/json")
    assert redis_client.llen("dramatiq:delivery.normal") == 1  # the default for an ordinary payment

    save(client, merchant.id, **{"rule-0-event_type": "mpesa.stk_push", "rule-0-priority": "urgent"})
    client.post(stk_url(merchant), data=callback.replace(b"ws_CO_191220191020363925", b"ws_CO_2"),
                content_type="application/json")
    assert redis_client.llen("dramatiq:delivery.urgent") == 1
    assert redis_client.llen("dramatiq:delivery.normal") == 1


def test_notification_preferences_choose_and_suppress_emails(console_app, smtp_server, mail_worker):
    store = console_app.extensions["payhook.store"]
    merchant, _ = merchant_with_endpoints(store, "https://shop.example/a", email="owner@shop.test")
    client = signed_in(console_app, merchant.id)
    save(client, merchant.id, **{"notice-payment_received-recipients": "books@shop.test"})
    mail_worker(smtp_url=smtp_server.url)
    callback = fixture_bytes("mpesa/stk_success.json")
    client.post(stk_url(merchant), data=callback, content_type="application/json")
    wait_until(lambda: smtp_server.messages, what="the payment notice")
    [(_, recipients, mail)] = smtp_server.messages
    assert recipients == ["books@shop.test"] and mail["Subject"].startswith("Payment received")

    save(client, merchant.id, **{"notice-payment_received-enabled": None})
    client.post(stk_url(merchant), data=callback.replace(b"ws_CO_191220191020363925", b"ws_CO_2"),
                content_type="application/json")
    with store.read() as session:
        second = session.scalar(select(Event.id).where(Event.reference == "ws_CO_2"))
        assert session.scalars(select(Email.template).where(Email.event_id == second)).all() == []
    assert len(smtp_server.messages) == 1


def test_a_retry_profile_changes_the_wait_before_a_retry(console_app, receiver, delivery_worker):
    store = console_app.extensions["payhook.store"]
    receiver.respond = lambda request: (500, {}, b"")
    gentle, _ = merchant_with_endpoints(store, receiver.url)
    aggressive, _ = merchant_with_endpoints(store, receiver.url)
    operator = signed_in(console_app, None)
    save(operator, gentle.id, **{"retry-profile": "gentle"})
    save(operator, aggressive.id, **{"retry-profile": "aggressive"})
    delivery_worker(retry_jitter=0.0, circuit_threshold=100)
    for merchant in (gentle, aggressive):
        operator.post(stk_url(merchant), data=fixture_bytes("mpesa/stk_success.json"),
                      content_type="application/json")
    receiver.wait_for(2)

    def first_wait(merchant) -> float | None:
        with store.read() as session:
            row = session.execute(select(Delivery.next_attempt_at, DeliveryAttempt.started_at)
                                  .join(DeliveryAttempt, DeliveryAttempt.delivery_id == Delivery.id)
                                  .where(Delivery.merchant_id == merchant.id, Delivery.state == "pending")).first()
        return None if row is None else (row.next_attempt_at - row.started_at).total_seconds()

    wait_until(lambda: first_wait(gentle) is not None and first_wait(aggressive) is not None, what="first failures")
    assert first_wait(gentle) == pytest.approx(merchant_settings.RETRY_PROFILES["gentle"][0], abs=1)
    assert first_wait(aggressive) == pytest.approx(merchant_settings.RETRY_PROFILES["aggressive"][0], abs=1)


def test_retention_days_change_what_purge_removes(console_app):
    store = console_app.extensions["payhook.store"]
    brief, _ = merchant_with_endpoints(store, "https://shop.example/a")
    usual, _ = merchant_with_endpoints(store, "https://shop.example/b")
    client = signed_in(console_app, brief.id)
    save(client, brief.id, **{"retention-events_days": "7", "retention-raw_payload_days": "2"})
    for merchant in (brief, usual):
        client.post(stk_url(merchant), data=fixture_bytes("mpesa/stk_success.json"), content_type="application/json")
    with store.write() as session:
        session.execute(update(Event).values(received_at=dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=10)))
        session.execute(update(Delivery).values(state=JobState.DONE.value))
        session.execute(update(Email).values(state=JobState.DONE.value))
    purged = retention.purge(store)
    assert purged.events == 1
    with store.read() as session:
        assert session.scalars(select(Event.merchant_id)).all() == [usual.id]
