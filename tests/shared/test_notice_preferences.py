"""Merchant notification preferences and what notice contexts may show."""

from __future__ import annotations

import pytest

from payhook_shared import notices
from payhook_shared.store import Merchant


def merchant(settings) -> Merchant:
    return Merchant(id="mch_1", name="Shop", notification_email="owner@shop.test", callback_token="t",
                    settings=settings)


def test_defaults_go_to_the_notification_email():
    shop = merchant({})
    assert notices.preference(shop, "payment_received") == notices.Preference(True, ("owner@shop.test",))
    assert notices.preference(shop, "payment_failed").enabled is False
    assert notices.preference(shop, "endpoint_disabled").enabled is True


@pytest.mark.parametrize("settings", [
    {"notifications": "yes"}, {"notifications": {"payment_received": ["x"]}},
    {"notifications": {"payment_received": {"enabled": "no", "recipients": "a@b.test"}}},
    {"notifications": {"payment_received": {"recipients": []}}},
])
def test_malformed_preferences_count_as_unset(settings):
    assert notices.preference(merchant(settings), "payment_received") == notices.Preference(True, ("owner@shop.test",))


def test_chosen_recipients_and_receipt_fallback():
    shop = merchant({"notifications": {"payment_failed": {"enabled": True, "recipients": ["a@shop.test"]},
                                       "receipt": {"fallback_email": "buyer@demo.test"}}})
    assert notices.preference(shop, "payment_failed") == notices.Preference(True, ("a@shop.test",))
    assert notices.preference(shop, "receipt").fallback_email == "buyer@demo.test"


def test_safe_url_drops_credentials_query_and_fragment():
    assert notices.safe_url("https://u:p@hooks.test:8443/a/b?token=s#x") == "https://hooks.test:8443/a/b"


def test_alerts_travel_ahead_of_receipts():
    assert notices.PRIORITIES["operator_alert"] < notices.PRIORITIES["endpoint_failing"] < notices.PRIORITIES["receipt"]
