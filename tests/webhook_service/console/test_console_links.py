"""Emailed sign-in links: asked for, stored hashed, opened without being spent, used once, refused after.

Through the links module and the Flask test client on both databases; the
path through the real mail-worker and SMTP is at the end, and a browser
follows an emailed link in test_console_link_browser.py.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import threading

import pytest
import redis as redis_lib
from sqlalchemy import func, select, update

from factories import merchant_with_endpoints
from payhook_shared import notices, sign_in
from payhook_shared.store import AuditEntry, Base, Email, Merchant, SignInLink
from payhook_shared.store.models import utcnow
from payhook_webhook.console import links
from support import csrf_token, wait_until

OPERATOR = "Ops@Payhook.test"
CONSOLE = "https://console.payhook.test"


@pytest.fixture
def console_app(console_app_with):
    return console_app_with(console_login_attempts=6, console_operator_emails=(OPERATOR,), console_public_url=CONSOLE + "/")


def parts(app):
    return app.extensions["payhook.store"], app.extensions["payhook.broker"], app.extensions["payhook.settings"]


def send(app, email: str) -> list[str]:
    """Ask for links for ``email``; the tokens its email carries once minted as the mail-worker mints them.

    None for an unknown address (nor when no new email was queued).
    """
    store, broker, settings = parts(app)
    with store.read() as session:
        before = session.scalar(select(func.count()).select_from(Email))
    links.send(store, broker, settings, email, "192.0.2.7")
    with store.write() as session:
        rows = session.scalars(select(Email).where(Email.template == "sign_in_link").order_by(Email.id)).all()
        if len(rows) == before:
            return []
        context = notices.sending_context(session, rows[-1])
    return [link["url"].rsplit("/", 1)[1] for link in context["links"]]


def ask(client, email: str, csrf_token: str | None):
    """Ask for a link at the sign-in page; the answer, closed as a server closes it, which sends the email."""
    data = {"email": email} if csrf_token is None else {"email": email, "csrf_token": csrf_token}
    with client.post("/console/login/email", data=data) as response:
        response.get_data()
    return response


def use(client, token: str):
    page = client.get(f"/console/sign-in/{token}")
    assert page.status_code == 200, page.get_data(as_text=True)
    return client.post(f"/console/sign-in/{token}", data={"csrf_token": csrf_token(page.get_data(as_text=True))})


def test_a_link_is_random_stored_hashed_and_points_at_the_console(console_app):
    store = console_app.extensions["payhook.store"]
    merchant, _ = merchant_with_endpoints(store, "https://shop.example/a", email="Owner@Shop.test")
    [token] = send(console_app, " owner@shop.TEST ")
    assert len(token) >= 43  # 256 random bits
    with store.read() as session:
        link = session.scalars(select(SignInLink)).one()
        email = session.scalars(select(Email)).one()
    assert link.token_hash == sign_in.hash_token(token) != token
    assert (link.email, link.merchant_id, link.used_at, link.requested_from) == (
        "owner@shop.test", merchant.id, None, "192.0.2.7")
    assert dt.timedelta(minutes=14) < link.expires_at - utcnow() <= dt.timedelta(minutes=15)
    assert email.recipients == ["owner@shop.test"] and email.priority == 0  # URGENT: someone is waiting
    assert email.context["links"] == [{"id": link.id, "label": f"Merchant Test Shop ({merchant.id})",
                                       "url": f"{CONSOLE}/console/sign-in/"}]  # the token is added when sent
    assert send(console_app, "other@shop.test") == []  # an unknown address queues nothing new


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
    assert [scopes[sign_in.hash_token(t)] for t in tokens] == [None, merchant.id]  # operator first


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
                                data={"csrf_token": csrf_token(again.get("/console/login").get_data(as_text=True))})):
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
    response = client.post(f"/console/sign-in/{token}", data={"csrf_token": csrf_token(response.get_data(as_text=True))})
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
    token = csrf_token(client.get("/console/login").get_data(as_text=True))
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


class RedisMonitor:
    """Every command any client sends to Redis while it runs (MONITOR), so nothing passing through is missed."""

    def __init__(self, url: str):
        self.client = redis_lib.Redis.from_url(url)
        self.monitor = self.client.monitor()
        self.commands: list[str] = []
        self.thread = threading.Thread(target=self._listen, daemon=True)

    def _listen(self) -> None:
        try:
            for command in self.monitor.listen():
                self.commands.append(command["command"])
        except (redis_lib.ConnectionError, ValueError, AttributeError):
            pass  # stop() closed the connection

    def start(self) -> "RedisMonitor":
        self.monitor.__enter__()
        self.thread.start()
        return self

    def stop(self) -> list[str]:
        """Every command sent until now (waits until the monitor has read up to a marker), then stop."""
        marker = "monitor-end"
        self.client.echo(marker)
        wait_until(lambda: any(marker in c for c in self.commands), what="the monitor to catch up")
        self.monitor.connection.disconnect()
        self.thread.join(5)
        self.client.close()
        return self.commands


def at_rest(store, client) -> str:
    """Every column of every table and every value held in Redis, as one text to search."""
    found = []
    with store.read() as session:
        for table in Base.metadata.sorted_tables:
            for row in session.execute(select(table)):
                found.extend(json.dumps(v, default=str) for v in row if v is not None)
    readers = {b"string": client.get, b"hash": client.hgetall, b"list": lambda k: client.lrange(k, 0, -1),
               b"set": client.smembers, b"zset": lambda k: client.zrange(k, 0, -1),
               b"stream": lambda k: client.xrange(k)}
    for key in client.scan_iter():
        found.append(f"{key!r} {readers[client.type(key)](key)!r}")
    return "\n".join(found)


def test_no_usable_sign_in_token_rests_anywhere_and_the_emailed_link_works_once(
        console_app, smtp_server, mail_worker, redis_client, caplog):
    store = console_app.extensions["payhook.store"]
    merchant, _ = merchant_with_endpoints(store, "https://shop.example/a", email="owner@shop.test")
    monitor = RedisMonitor(console_app.extensions["payhook.settings"].redis_url).start()
    client = console_app.test_client()
    ask(client, "owner@shop.test", csrf_token(client.get("/console/login").get_data(as_text=True)))
    queued = at_rest(store, redis_client)  # the email waits in the store and its message in Redis

    smtp_server.script = ["451 4.3.0 try later"]  # the first send fails, so the email is sent again
    mail_worker(smtp_url=smtp_server.url, retry_schedule=(0.1,), retry_jitter=0.0)
    wait_until(lambda: smtp_server.messages, what="the sign-in email, sent the second time")
    [(_, recipients, mail)] = smtp_server.messages
    assert recipients == ["owner@shop.test"] and mail["Subject"] == "Your Payhook console sign-in link"
    bodies = {p.get_content_type(): p.get_payload(decode=True).decode() for p in mail.walk() if not p.is_multipart()}
    [url] = re.findall(r"https://console\.payhook\.test/console/sign-in/[A-Za-z0-9_-]+", bodies["text/plain"])
    assert url in bodies["text/html"] and "works once, within 15 minutes" in bodies["text/plain"]
    token = url.rsplit("/", 1)[1]

    def sent() -> Email:
        with store.read() as session:
            return session.scalars(select(Email)).one()

    wait_until(lambda: sent().state == "done", what="the email marked sent")
    assert sent().attempts == 2
    commands = monitor.stop()
    assert any(sent().id in c for c in commands)  # the monitor saw the email's messages go through Redis
    assert token not in queued
    assert token not in at_rest(store, redis_client)
    assert [c for c in commands if token in c] == []
    assert [r.getMessage() for r in caplog.records if token in r.getMessage() and r.name != "mail.log"] == []

    response = use(client, token)
    assert response.status_code == 302
    assert f"Merchant {merchant.id} · owner@shop.test" in client.get("/console/").get_data(as_text=True)
    again = console_app.test_client()
    refused = again.post(url.replace(CONSOLE, ""), data={
        "csrf_token": csrf_token(again.get("/console/login").get_data(as_text=True))})
    assert refused.status_code == 410 and "has been used already" in refused.get_data(as_text=True)


def test_a_resent_email_carries_a_new_token_and_the_one_before_stops_working(console_app):
    store = console_app.extensions["payhook.store"]
    merchant_with_endpoints(store, "https://shop.example/a", email="owner@shop.test")
    [first] = send(console_app, "owner@shop.test")
    with store.write() as session:  # the mail-worker sends the same email again
        context = notices.sending_context(session, session.scalars(select(Email)).one())
    [second] = [link["url"].rsplit("/", 1)[1] for link in context["links"]]
    assert second != first
    client = console_app.test_client()
    response = client.get(f"/console/sign-in/{first}")
    assert response.status_code == 410 and "This sign-in link is not valid" in response.get_data(as_text=True)
    assert use(client, second).status_code == 302


def test_a_used_or_expired_link_gets_no_token_when_its_email_is_sent_late(console_app):
    store = console_app.extensions["payhook.store"]
    merchant_with_endpoints(store, "https://shop.example/a", email="owner@shop.test")
    [token] = send(console_app, "owner@shop.test")
    use(console_app.test_client(), token)
    with store.write() as session:
        assert notices.sending_context(session, session.scalars(select(Email)).one())["links"] == []
        assert session.scalars(select(SignInLink.token_hash)).one() == sign_in.hash_token(token)
