"""The operator alert: dead letters past the threshold mail the operators, once per hour."""

from __future__ import annotations

import dataclasses
import datetime as dt

from sqlalchemy import update

from factories import merchant_with_endpoints
from payhook_mail.alerts import check_dead_letters
from payhook_shared import notices
from payhook_shared.store import Email, JobState
from support import wait_until


def dead_emails(store, count: int) -> None:
    """``count`` emails given up on, as the mail worker leaves them."""
    merchant, [endpoint] = merchant_with_endpoints(store, "https://hooks.shop.test/a")
    with store.write() as session:
        for n in range(count):
            started = dt.datetime(2024, 5, 1, n, tzinfo=dt.timezone.utc)
            notices.stage(session, notices.endpoint_failing(merchant, endpoint, incident_started_at=started,
                                                            failures=3))
        session.execute(update(Email).values(state=JobState.DEAD.value, last_error="SMTP 550"))


def test_dead_letters_past_the_threshold_alert_the_operators_once(store, smtp_server, mail_worker):
    dead_emails(store, 2)
    rt = mail_worker(smtp_url=smtp_server.url, alert_emails=("ops@payhook.test", "oncall@payhook.test"),
                     alert_dead_letter_threshold=2, alert_interval=0.1)
    wait_until(lambda: smtp_server.messages, what="the operator alert")
    # Several more checks, and sweeps: still one alert this hour.
    assert not any(check_dead_letters(rt.settings, rt.store, rt.broker) for _ in range(3))
    assert rt.sweeper.run_once() == 0
    [(_, recipients, mail)] = smtp_server.messages
    assert recipients == ["ops@payhook.test", "oncall@payhook.test"]
    assert mail["Subject"] == "[Payhook alert] 2 dead letters (threshold 2)"
    [text] = [p.get_payload(decode=True).decode() for p in mail.walk() if p.get_content_type() == "text/plain"]
    assert "dead emails: 2" in text and "dead deliveries: 0" in text


def test_below_the_threshold_or_without_recipients_nothing_is_sent(store, mail_worker):
    dead_emails(store, 1)
    rt = mail_worker(alert_emails=("ops@payhook.test",), alert_dead_letter_threshold=2)
    assert not check_dead_letters(rt.settings, rt.store, rt.broker)
    settings = dataclasses.replace(rt.settings, alert_emails=(), alert_dead_letter_threshold=1)
    assert not check_dead_letters(settings, rt.store, rt.broker)
    settings = dataclasses.replace(settings, alert_emails=("ops@payhook.test",))
    assert check_dead_letters(settings, rt.store, rt.broker)
    assert not check_dead_letters(settings, rt.store, rt.broker)  # once per hour
