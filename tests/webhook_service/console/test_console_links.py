"""Emailed sign-in links: asked for, stored hashed, opened without being spent, used once, refused after.

Through the links module and the Flask test client on both databases; the
path through the real mail-worker and SMTP is at the end, and a browser
follows an emailed link in test_console_link_browser.py.
"""

from __future__ import annotations

import datetime as dt
import re

import pytest
from sqlalchemy import select, update

from factories import merchant_with_endpoints
from payhook_shared.store import AuditEntry, Email, Merchant, SignInLink
from payhook_shared.store.models import utcnow
from payhook_webhook.app import create_app
from payhook_webhook.console import links
from support import wait_until

OPERATOR = "Ops@Payhook.test"
CONSOLE = "https://console.payhook.test"


@pytest.fixture
def console_app(database_url, redis_url):
    app = create_app({"database_url": database_url, "redis_url": redis_url, "log_format": "text",
                      "console_cookie_secure": False, "console_login_attempts": 6,
                      "console_operator_emails": (OPERATOR,), "console_public_url": CONSOLE + "/"})
    app.config["TESTING"] = True
    yield app
    app.extensions["payhook.store"].dispose()


def parts(app):
    return app.extensions["payhook.store"], app.extensions["payhook.broker"], app.extensions["payhook.settings"]


def send(app, email: str) -> list[str]:
    """Ask for links for ``email``; the tokens in the email queued (none for an unknown address)."""
    store, broker, settings = parts(app)
    links.send(store, broker, settings, email, "192.0.2.7")
    with store.read() as session:
        rows = session.scalars(select(Email).where(Email.template == "sign_in_link").order_by(Email.id)).all()
    if not rows:
        return []
    return [link["url"].rsplit("/", 1)[1] for link in rows[-1].context["links"]]


def _csrf(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def ask(client, email: str, csrf_token: str | None):
    """Ask for a link at the sign-in page; the answer, closed as a server closes it, which sends the email."""
    data = {"email": email} if csrf_token is None else {"email": email, "csrf_token": csrf_token}
    with client.post("/console/login/email", data=data) as response:
        response.get_data()
    return response


def use(client, token: str):
    page = client.get(f"/console/sign-in/{token}")
    assert page.status_code == 200, page.get_data(as_text=True)
    return client.post(f"/console/sign-in/{token}", data={"csrf_token": _csrf(page.get_data(as_text=True))})


def test_a_link_is_random_stored_hashed_and_points_at_the_console(console_app):
    store = console_app.extensions["payhook.store"]
    merchant, _ = merchant_with_endpoints(store, "https://shop.example/a", email="Owner@Shop.test")
    [token] = send(console_app, " owner@shop.TEST ")
    assert len(token) >= 43  # 256 random bits
    with store.read() as session:
        link = session.scalars(select(SignInLink)).one()
        email = session.scalars(select(Email)).one()
    assert link.token_hash == links.hash_token(token) != token
    assert (link.email, link.merchant_id, link.used_at, link.requested_from) == (
        "owner@shop.test", merchant.id, None, "192.0.2.7")
    assert dt.timedelta(minutes=14) < link.expires_at - utcnow() <= dt.timedelta(minutes=15)
    assert email.recipients == ["owner@shop.test"] and email.priority == 0  # URGENT: someone is waiting
    assert email.context["links"] == [{"label": f"Merchant Test Shop ({merchant.id})",
                                       "url": f"{CONSOLE}/console/sign-in/{token}"}]
    assert send(console_app, "other@shop.test") == [token]  # an unknown address queues nothing new


def test_unknown_and_disabled_addresses_get_nothing(console_app):
    store = console_app.extensions["payhook.store"]
    merchant, _ = merchant_with_endpoints(store, "https://shop.example/a", email="gone@shop.test")
    with store.write() as session:
        session.get(Merchant, merchant.id).enabled = False
    assert send(console_app, "gone@shop.test") == []
    assert send(console_app, "nobody@shop.test") == []
    with store.read() as session:
        assert session.scalars(select(SignInLink)).all() == []


def test_one_address_gets_a_link_per_account(console_app):
    store = console_app.extensions["payhook.store"]
    merchant, _ = merchant_with_endpoints(store, "https://shop.example/a", email="ops@payhook.test")
    tokens = send(console_app, "ops@payhook.test")
    assert len(tokens) == 2
    with store.read() as session:
        scopes = {link.token_hash: link.merchant_id for link in session.scalars(select(SignInLink))}
    assert [scopes[links.hash_token(t)] for t in tokens] == [None, merchant.id]  # operator first


def test_a_link_works_once(console_app):
    store = console_app.extensions["payhook.store"]
    merchant, _ = merchant_with_endpoints(store, "https://shop.example/a", email="owner@shop.test")
    [token] = send(console_app, "owner@shop.test")
    client = console_app.test_client()
    opened = client.get(f"/console/sign-in/{token}")
    assert opened.status_code == 200 and "owner@shop.test" in opened.get_data(as_text=True)
    assert client.get(f"/console/sign-in/{token}").status_code == 200  # opening twice spends nothing
    assert client.post(f"/console/sign-in/{token}", data={}).status_code == 403  # no CSRF token
    with store.read() as session:
        assert session.scalars(select(SignInLink.used_at)).one() is None

    response = use(client, token)
    assert response.status_code == 302 and response.headers["Location"].endswith("/console/")
    page = client.get("/console/settings").get_data(as_text=True)
    assert f"Merchant {merchant.id} · owner@shop.test" in page and f"Settings of Test Shop <small>{merchant.id}" in page
    with store.read() as session:
        link = session.scalars(select(SignInLink)).one()
        [entry] = session.scalars(select(AuditEntry)).all()
    assert link.used_at is not None
    assert (entry.action, entry.api_key_id, entry.merchant_id, entry.details["method"], entry.details["email"]) == (
        "sign_in", link.id, merchant.id, "email_link", "owner@shop.test")

    again = console_app.test_client()
    for response in (again.get(f"/console/sign-in/{token}"),
                     again.post(f"/console/sign-in/{token}",
                                data={"csrf_token": _csrf(again.get("/console/login").get_data(as_text=True))})):
        assert response.status_code == 410
        assert "has been used already: each link works once" in response.get_data(as_text=True)
    assert again.get("/console/").status_code == 302  # not signed in


def test_expired_and_unknown_links_are_refused_clearly(console_app):
    store = console_app.extensions["payhook.store"]
    merchant_with_endpoints(store, "https://shop.example/a", email="owner@shop.test")
    [token] = send(console_app, "owner@shop.test")
    with store.write() as session:
        session.execute(update(SignInLink).values(expires_at=utcnow() - dt.timedelta(seconds=1)))
    client = console_app.test_client()
    response = client.get(f"/console/sign-in/{token}")
    assert response.status_code == 410 and "has expired: links work for 15 minutes" in response.get_data(as_text=True)
    response = client.post(f"/console/sign-in/{token}", data={"csrf_token": _csrf(response.get_data(as_text=True))})
    assert response.status_code == 410
    response = client.get("/console/sign-in/" + "A" * 43)
    assert response.status_code == 410 and "This sign-in link is not valid" in response.get_data(as_text=True)
    with store.read() as session:
        assert session.scalars(select(SignInLink.used_at)).one() is None


def test_an_operator_link_signs_in_an_operator(console_app):
    store = console_app.extensions["payhook.store"]
    one, _ = merchant_with_endpoints(store, "https://shop.example/a", email="a@shop.test")
    two, _ = merchant_with_endpoints(store, "https://shop.example/b", email="b@shop.test")
    [token] = send(console_app, "ops@payhook.test")
    client = console_app.test_client()
    assert "as an <strong>operator</strong>" in client.get(f"/console/sign-in/{token}").get_data(as_text=True)
    use(client, token)
    page = client.get("/console/settings").get_data(as_text=True)
    assert "Operator · ops@payhook.test" in page and one.id in page and two.id in page  # the merchant picker


def test_the_session_ends_when_the_address_may_no_longer_sign_in(console_app):
    store = console_app.extensions["payhook.store"]
    merchant, _ = merchant_with_endpoints(store, "https://shop.example/a", email="owner@shop.test")
    [token] = send(console_app, "owner@shop.test")
    client = console_app.test_client()
    use(client, token)
    assert client.get("/console/").status_code == 200
    with store.write() as session:
        session.get(Merchant, merchant.id).notification_email = "new-owner@shop.test"
    assert client.get("/console/").status_code == 302


def test_asking_answers_the_same_for_any_address_and_is_rate_limited(console_app):
    store = console_app.extensions["payhook.store"]
    merchant_with_endpoints(store, "https://shop.example/a", email="owner@shop.test")
    client = console_app.test_client()
    token = _csrf(client.get("/console/login").get_data(as_text=True))
    answers = [ask(client, email, token) for email in ("owner@shop.test", "nobody@shop.test")]
    assert [a.status_code for a in answers] == [200, 200]
    assert answers[0].get_data() == answers[1].get_data()
    assert "If that address may sign in to the console, a sign-in link is on its way" in answers[0].get_data(as_text=True)
    with store.read() as session:
        assert session.scalars(select(SignInLink.email)).all() == ["owner@shop.test"]

    bad = ask(client, "not an address", token)
    assert bad.status_code == 400 and "Enter an email address" in bad.get_data(as_text=True)
    assert ask(client, "owner@shop.test", None).status_code == 403
    for _ in range(3):  # the sign-in limit (6 here) counts link requests, link uses and key sign-ins alike
        ask(client, "owner@shop.test", token)
    limited = ask(client, "owner@shop.test", token)
    assert limited.status_code == 429 and "too many sign-in attempts" in limited.get_data(as_text=True)
    with store.read() as session:  # and one address gets at most 3 links per window
        assert len(session.scalars(select(SignInLink)).all()) == 3


def test_the_link_email_goes_through_the_mail_worker_and_the_link_is_then_blanked(
        console_app, smtp_server, mail_worker):
    store = console_app.extensions["payhook.store"]
    mail_worker(smtp_url=smtp_server.url)
    client = console_app.test_client()
    token = _csrf(client.get("/console/login").get_data(as_text=True))
    ask(client, "ops@payhook.test", token)
    wait_until(lambda: smtp_server.messages, what="the sign-in email")
    [(_, recipients, mail)] = smtp_server.messages
    assert recipients == ["ops@payhook.test"] and mail["Subject"] == "Your Payhook console sign-in link"
    bodies = {p.get_content_type(): p.get_payload(decode=True).decode() for p in mail.walk() if not p.is_multipart()}
    [url] = re.findall(r"https://console\.payhook\.test/console/sign-in/[A-Za-z0-9_-]+", bodies["text/plain"])
    assert url in bodies["text/html"] and "works once, within 15 minutes" in bodies["text/plain"]

    def sent() -> Email:
        with store.read() as session:
            return session.scalars(select(Email)).one()

    wait_until(lambda: sent().state == "done", what="the email marked sent")
    assert sent().context == {"links": [], "expires_minutes": 15}  # the link is not kept once sent
    response = use(client, url.rsplit("/", 1)[1])
    assert response.status_code == 302
    assert "Operator · ops@payhook.test" in client.get("/console/").get_data(as_text=True)
