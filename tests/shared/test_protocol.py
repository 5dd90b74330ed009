"""The protocol package: messages, signing, money and settings."""

from __future__ import annotations

import dataclasses
from decimal import Decimal

import pytest
from standardwebhooks.webhooks import Webhook

from payhook_shared import money, signing
from payhook_shared.config import load_settings
from payhook_shared.errors import ConfigError, DecodeError
from payhook_shared.messages import DeliverWebhook, SendEmail
from payhook_shared.priority import Priority, queue_names


def test_message_round_trip_and_routing():
    msg = DeliverWebhook(delivery_ids=("dlv_1", "dlv_2"), priority=Priority.URGENT)
    assert DeliverWebhook.decode(msg.encode()) == msg
    dm = msg.to_dramatiq()
    assert (dm.queue_name, dm.actor_name, dm.kwargs["priority"]) == ("delivery.urgent", "delivery_urgent", "urgent")
    assert SendEmail.decode(SendEmail(email_id="e", merchant_id="m", priority=Priority.LOW).encode()).event_id is None


def test_a_message_from_before_batches_still_decodes():
    """A rolling upgrade: messages of one delivery, enqueued by the previous version, are still delivered."""
    old = {"delivery_id": "dlv_1", "event_id": "evt_1", "merchant_id": "mch_1", "priority": "high"}
    assert DeliverWebhook.decode(old) == DeliverWebhook(delivery_ids=("dlv_1",), priority=Priority.HIGH)


@pytest.mark.parametrize("data, field", [
    ({"priority": "normal"}, "delivery_ids"),
    ({"delivery_ids": [], "priority": "normal"}, "delivery_ids"),
    ({"delivery_ids": [f"d{i}" for i in range(17)], "priority": "normal"}, "delivery_ids"),
    ({"delivery_ids": ["d"], "priority": "whenever"}, "priority"),
    ({"delivery_ids": [5], "priority": "low"}, "delivery_ids"),
    ({"delivery_id": 5, "event_id": "e", "merchant_id": "m", "priority": "low"}, "delivery_ids"),
])
def test_decode_names_the_bad_field(data, field):
    with pytest.raises(DecodeError) as info:
        DeliverWebhook.decode(data)
    assert field in info.value.messages


def test_decode_refuses_non_objects():
    with pytest.raises(DecodeError):
        DeliverWebhook.decode(["not", "a", "dict"])


def test_queue_per_level_most_urgent_first():
    assert queue_names("delivery") == ["delivery.urgent", "delivery.high", "delivery.normal", "delivery.low"]
    assert Priority.parse("High") is Priority.HIGH and Priority.parse(3) is Priority.LOW


def test_signature_matches_the_reference_implementation():
    secret = signing.generate_secret()
    body = b'{"id":"evt_1","amount":"1.00"}'
    headers = signing.headers([secret], "evt_1", body)
    assert Webhook(secret).verify(body, headers) == {"id": "evt_1", "amount": "1.00"}
    signing.verify(secret, headers, body)


def test_rotation_signs_with_both_secrets_and_tampering_fails():
    old, new = signing.generate_secret(), signing.generate_secret()
    body = b"{}"
    headers = signing.headers([new, old], "evt_2", body)
    Webhook(old).verify(body, headers)
    Webhook(new).verify(body, headers)
    with pytest.raises(signing.SignatureError):
        signing.verify(new, headers, b"{ }")
    with pytest.raises(signing.SignatureError):
        signing.verify(new, {**headers, "webhook-timestamp": "1"}, body)
    with pytest.raises(signing.SignatureError):
        signing.verify(new, {"webhook-id": "x"}, body)


@pytest.mark.parametrize("value, currency, minor", [
    ("5.00", "KES", 500), (1.0, "KES", 100), (10, "KES", 1000), ("1250.50", "NGN", 125050),
    ("500", "JPY", 500), ("1.234", "KWD", 1234), (0, "USD", 0),
])
def test_amounts_to_minor_units(value, currency, minor):
    assert money.to_minor(value, currency) == minor


@pytest.mark.parametrize("value", ["abc", "-1", "NaN", "Infinity", "1.005", True, None, "1e30", "1e999999",
                                   "1e-999999999", "1,0,0", "1,250.50", "1_000", "\u0661\u0660\u0660",
                                   "\uff11\uff10\uff10", " 5", "+5", ".5", "5.", "", 1e308, 10**30, -1,
                                   float("nan"), {"v": 1}, "9" * 41])
def test_bad_amounts_are_refused(value):
    with pytest.raises(money.AmountError):
        money.to_minor(value, "KES")


def test_format_amount():
    assert money.format_amount(100, "KES") == Decimal("1.00")
    assert money.format_amount(500, "JPY") == Decimal("500")


@dataclasses.dataclass(frozen=True)
class _Example:
    name: str = "x"
    port: int = 1
    ratio: float = 0.5
    debug: bool = False
    schedule: tuple[float, ...] = (1.0,)
    optional: str | None = None


def test_settings_convert_types():
    s = load_settings(_Example, {"PORT": "8080", "DEBUG": "yes", "SCHEDULE": "2, 4,8", "RATIO": "0.25"})
    assert (s.port, s.debug, s.schedule, s.ratio, s.name) == (8080, True, (2.0, 4.0, 8.0), 0.25, "x")
    assert load_settings(_Example, {}, port=9).port == 9


def test_settings_refuse_bad_values():
    with pytest.raises(ConfigError, match="PORT"):
        load_settings(_Example, {"PORT": "eighty"})
    with pytest.raises(ConfigError, match="DEBUG"):
        load_settings(_Example, {"DEBUG": "maybe"})
    with pytest.raises(ConfigError, match="nope"):
        load_settings(_Example, {}, nope=1)
