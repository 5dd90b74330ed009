"""Console sign-in, scope, CSRF, rate limit and audit through the Flask test client (no browser)."""

from __future__ import annotations

import datetime as dt
import html
import re

import pytest
from sqlalchemy import select

from factories import merchant_with_endpoints, record_payment
from support import console_sign_in, csrf_token
from payhook_shared import ids
from payhook_shared.store import AuditEntry, Delivery, Event
from payhook_webhook.app import create_app
from payhook_webhook.auth import create_api_key
from payhook_webhook.console import queries


@pytest.fixture
def console_app(console_app_with):
    return console_app_with(console_login_attempts=3)


def sign_in(client, key: str):
    token = csrf_token(client.get("/console/login").get_data(as_text=True))
    return client.post("/console/login", data={"api_key": key, "csrf_token": token})


def test_pages_need_a_session(console_app):
    client = console_app.test_client()
    response = client.get("/console/events")
    assert response.status_code == 302 and response.headers["Location"].endswith("/console/login")


def test_sign_in_sets_a_hardened_cookie_and_csp(console_app):
    store = console_app.extensions["payhook.store"]
    _, key = create_api_key(store, None, "ops")
    client = console_app.test_client()
    response = sign_in(client, key)
    assert response.status_code == 302
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/console" in cookie
    assert key not in cookie
    page = client.get("/console/")
    assert page.status_code == 200
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    assert page.headers["Cache-Control"] == "no-store"
    with store.read() as session:
        assert session.scalars(select(AuditEntry.action)).all() == ["sign_in"]


def test_secure_cookie_is_the_default(database_url, redis_url):
    app = create_app({"database_url": database_url, "redis_url": redis_url, "log_format": "text"})
    assert app.config["SESSION_COOKIE_SECURE"] is True
    app.extensions["payhook.store"].dispose()


def test_a_wrong_key_is_refused_and_attempts_are_limited(console_app):
    client = console_app.test_client()
    for _ in range(3):
        response = sign_in(client, "phk_" + "0" * 64)
        assert response.status_code == 401 and "invalid API key" in response.get_data(as_text=True)
    response = sign_in(client, "phk_" + "0" * 64)
    assert response.status_code == 429 and "too many sign-in attempts" in response.get_data(as_text=True)


def test_a_form_without_its_csrf_token_is_refused(console_app, receiver):
    store = console_app.extensions["payhook.store"]
    merchant, [endpoint] = merchant_with_endpoints(store, receiver.url)
    _, key = create_api_key(store, None, "ops")
    client = console_app.test_client()
    sign_in(client, key)
    for path in (f"/console/endpoints/{endpoint.id}/disable", "/console/logout", "/console/dead-letters/purge"):
        response = client.post(path, data={"confirm": "yes"})
        assert response.status_code == 403, path
        assert "security token" in response.get_data(as_text=True)
        response = client.post(path, data={"confirm": "yes", "csrf_token": "forged"})
        assert response.status_code == 403, path
    assert client.post("/console/login", data={"api_key": key}).status_code == 403
    with store.read() as session:
        assert session.get(type(endpoint), endpoint.id).enabled is True


def test_a_merchant_sees_only_its_own_rows(console_app, receiver):
    store = console_app.extensions["payhook.store"]
    broker = console_app.extensions["payhook.broker"]
    mine, [my_endpoint] = merchant_with_endpoints(store, receiver.url)
    theirs, [their_endpoint] = merchant_with_endpoints(store, receiver.url)
    my_event = record_payment(store, broker, mine.id, "mpesa/stk_success.json")
    their_event = record_payment(store, broker, theirs.id, "mpesa/stk_success.json")
    with store.read() as session:
        their_delivery = session.scalar(select(Delivery.id).where(Delivery.event_id == their_event))
    _, key = create_api_key(store, mine.id, "shop")
    client = console_app.test_client()
    sign_in(client, key)
    listing = client.get("/console/events").get_data(as_text=True)
    assert my_event in listing and their_event not in listing
    assert client.get(f"/console/events/{my_event}").status_code == 200
    for path in (f"/console/events/{their_event}", f"/console/deliveries/{their_delivery}"):
        assert client.get(path).status_code == 404
    # Asking for the other merchant in a filter changes nothing: the scope wins.
    assert their_event not in client.get(f"/console/events?merchant={theirs.id}").get_data(as_text=True)
    token = csrf_token(listing)
    assert client.post(f"/console/endpoints/{their_endpoint.id}/disable",
                       data={"csrf_token": token}).status_code == 404
    assert client.post(f"/console/deliveries/{their_delivery}/retry", data={"csrf_token": token}).status_code == 404
    urls = client.get("/console/callback-urls").get_data(as_text=True)
    assert mine.callback_token in urls and theirs.callback_token not in urls


def test_operator_actions_are_audited(console_app, receiver):
    store = console_app.extensions["payhook.store"]
    merchant, [endpoint] = merchant_with_endpoints(store, receiver.url)
    key_row, key = create_api_key(store, None, "ops")
    client = console_app.test_client()
    sign_in(client, key)
    token = csrf_token(client.get("/console/endpoints").get_data(as_text=True))
    assert client.post(f"/console/endpoints/{endpoint.id}/disable", data={"csrf_token": token}).status_code == 302
    rotated = client.post(f"/console/endpoints/{endpoint.id}/rotate",
                          data={"csrf_token": token, "grace_period_seconds": "0"})
    assert rotated.status_code == 200 and "whsec_" in rotated.get_data(as_text=True)
    assert client.post("/console/dead-letters/purge", data={"csrf_token": token}).status_code == 400
    assert client.post("/console/dead-letters/purge",
                       data={"csrf_token": token, "confirm": "yes"}).status_code == 302
    created = client.post("/console/endpoints", data={"csrf_token": token, "merchant": merchant.id,
                                                     "url": "ftp://nope"})
    assert created.status_code == 400 and "absolute http(s) URL" in created.get_data(as_text=True)
    with store.read() as session:
        entries = session.scalars(select(AuditEntry).order_by(AuditEntry.id)).all()
    assert [e.action for e in entries] == ["sign_in", "disable", "rotate_secret", "purge"]
    assert {e.api_key_id for e in entries} == {key_row.id}
    assert entries[1].target == endpoint.id and entries[1].at is not None
    assert "rotate_secret" in client.get("/console/audit").get_data(as_text=True)


def test_bad_filters_answer_400_naming_the_field(console_app):
    store = console_app.extensions["payhook.store"]
    _, key = create_api_key(store, None, "ops")
    client = console_app.test_client()
    sign_in(client, key)
    response = client.get("/console/events?since=yesterday")
    assert response.status_code == 400 and "since: must be a date" in response.get_data(as_text=True)
    assert client.get("/console/events?phone=12%25").status_code == 400
    assert client.get("/console/deliveries?state=bogus").status_code == 400
    assert client.get("/console/audit?after=x").status_code == 400


def test_a_second_page_keeps_every_filter_even_one_named_endpoint(console_app, receiver):
    store = console_app.extensions["payhook.store"]
    merchant, [endpoint] = merchant_with_endpoints(store, receiver.url)
    now = dt.datetime.now(dt.timezone.utc)
    with store.write() as session:
        for n in range(queries.PAGE + 1):
            event_id = ids.new_id("evt")
            session.add(Event(id=event_id, merchant_id=merchant.id, provider="api", type="order.paid",
                              status="succeeded", priority=2, dedupe_key=f"api:{n}", raw_payload="{}"))
            session.add(Delivery(id=ids.new_id("dlv"), event_id=event_id, endpoint_id=endpoint.id,
                                 merchant_id=merchant.id, priority=2, state="dead", dead_at=now,
                                 last_category="server_error"))
    _, key = create_api_key(store, None, "ops")
    client = console_app.test_client()
    sign_in(client, key)
    for page in (f"/console/deliveries?endpoint={endpoint.id}", f"/console/dead-letters?endpoint={endpoint.id}"):
        first = client.get(page)
        assert first.status_code == 200
        following = html.unescape(re.search(r'href="([^"]+)" rel="next"', first.get_data(as_text=True)).group(1))
        assert f"endpoint={endpoint.id}" in following and "after=dlv_" in following
        assert client.get(following).status_code == 200


def _dead_letters(store, merchant, endpoint, n: int) -> None:
    now = dt.datetime.now(dt.timezone.utc)
    with store.write() as session:
        for _ in range(n):
            event_id = ids.new_id("evt")
            session.add(Event(id=event_id, merchant_id=merchant.id, provider="api", type="order.paid",
                              status="succeeded", priority=2, dedupe_key=f"api:{ids.new_token()}", raw_payload="{}"))
            session.add(Delivery(id=ids.new_id("dlv"), event_id=event_id, endpoint_id=endpoint.id,
                                 merchant_id=merchant.id, priority=2, state="dead", dead_at=now,
                                 last_category="server_error"))


def test_retry_all_and_purge_with_an_endpoint_filter_go_back_to_the_filtered_list(console_app, receiver):
    store = console_app.extensions["payhook.store"]
    merchant, [endpoint, other] = merchant_with_endpoints(store, receiver.url, receiver.url + "/other")
    _dead_letters(store, merchant, endpoint, 2)
    _, key = create_api_key(store, None, "ops")
    client = console_app.test_client()
    csrf = console_sign_in(client, key)
    filters = {"endpoint": endpoint.id, "category": "server_error"}
    response = client.post("/console/dead-letters/retry", data={**filters, "which": "matching", "csrf_token": csrf})
    assert response.status_code == 302
    assert response.headers["Location"] == f"/console/dead-letters?endpoint={endpoint.id}&category=server_error"
    with store.read() as session:
        assert sorted(session.scalars(select(Delivery.state))) == ["pending", "pending"]
    _dead_letters(store, merchant, other, 1)
    response = client.post("/console/dead-letters/purge", data={"endpoint": other.id, "confirm": "yes",
                                                                "csrf_token": csrf})
    assert response.status_code == 302 and response.headers["Location"] == f"/console/dead-letters?endpoint={other.id}"
    assert "1 dead letter purged." in client.get(response.headers["Location"]).get_data(as_text=True)
    with store.read() as session:
        assert session.scalars(select(Delivery.endpoint_id)).all() == [endpoint.id, endpoint.id]


def test_another_merchants_ids_answer_exactly_as_unknown_ids(console_app, receiver):
    store = console_app.extensions["payhook.store"]
    mine, _ = merchant_with_endpoints(store, receiver.url)
    theirs, [endpoint] = merchant_with_endpoints(store, receiver.url)
    _dead_letters(store, theirs, endpoint, 1)
    with store.read() as session:
        delivery = session.scalar(select(Delivery))
    _, key = create_api_key(store, mine.id, "shop")
    client = console_app.test_client()
    csrf = console_sign_in(client, key)
    unknown = {i: i[:i.index("_") + 1] + "0" * (len(i) - i.index("_") - 1)
               for i in (theirs.id, endpoint.id, delivery.id, delivery.event_id)}

    def answer(method: str, path: str, form: dict[str, str], ident: str):
        response = client.open(path.format(ident), method=method,
                               data={k: v.format(ident) for k, v in {**form, "csrf_token": csrf}.items()})
        return response.status_code, response.get_data(as_text=True).replace(ident, "<id>")

    for method, path, form, ident in (
            ("GET", "/console/events/{}", {}, delivery.event_id), ("GET", "/console/deliveries/{}", {}, delivery.id),
            ("POST", "/console/deliveries/{}/retry", {}, delivery.id),
            ("POST", "/console/endpoints/{}/disable", {}, endpoint.id),
            ("POST", "/console/endpoints/{}/rotate", {}, endpoint.id),
            ("POST", "/console/dead-letters/recover", {"endpoint": "{}", "since": "2026-01-01"}, endpoint.id)):
        seen = answer(method, path, form, ident)
        assert seen[0] == 404 and seen == answer(method, path, form, unknown[ident]), (method, path)
    with store.read() as session:
        assert session.get(Delivery, delivery.id).state == "dead"
