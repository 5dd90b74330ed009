"""The one address rule and header cleaning that the API, console, settings and mail-worker share."""

from __future__ import annotations

import pytest

from payhook_shared import addresses

GOOD = ["buyer@shop.example", "Owner@Shop.test", "o'brien+receipts@mail.shop.co.ke", "a@b.io", "x@xn--p1ai.xn--p1ai"]
# Each is accepted by marshmallow's Email field, or by the mail-worker's old pattern, but not both.
BAD = ["owner@localhost", '"owner shop"@shop.test', "owner@[127.0.0.1]", "\u00f3wner@shop.test",
       "owner@shop.test\r\nBcc: x@evil.test", "owner@shop..test", ".owner@shop.test", "owner@-shop.test",
       "owner@shop.t", "a" * 65 + "@shop.test", "owner@" + "a" * 250 + ".test", "", "owner", None, 5]


@pytest.mark.parametrize("address", GOOD)
def test_plain_addresses_are_valid(address):
    assert addresses.is_valid(address) and addresses.valid_or_none(address) == address


@pytest.mark.parametrize("address", BAD, ids=repr)
def test_addresses_the_mail_worker_would_not_send_to_are_invalid(address):
    assert not addresses.is_valid(address) and addresses.valid_or_none(address) is None


@pytest.mark.parametrize("value, clean", [
    ("Payment received: KES 1.00 (NLJ7\r\nBcc: x@evil.test)", "Payment received: KES 1.00 (NLJ7 Bcc: x@evil.test)"),
    ("a\nb\rc\x00d\x7fe\x85f\u2028g\u2029h\x1bi", "a b c d e f g h i"),
    ("  padded \t\t subject  ", "padded subject"),
    ("x" * 2000, "x" * 998),
])
def test_header_text_is_one_clean_line(value, clean):
    assert addresses.header_text(value) == clean
