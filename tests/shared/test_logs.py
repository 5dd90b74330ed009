"""Correlation ids: a caller's id is kept only when it is a short token."""

from __future__ import annotations

import re

import pytest

from payhook_shared.logs import correlation_id

GENERATED = re.compile(r"^[0-9a-f]{32}$")


@pytest.mark.parametrize("given", ["req-1", "a.b_c-D9", "x" * 128, "01J9ZK5Y3T0V8W2X4Y6Z8A0B2C"])
def test_a_short_token_is_kept(given):
    assert correlation_id(given) == given


@pytest.mark.parametrize("given", [None, "", "x" * 129, "a b", "id merchant_id=mch_forged", "a=b", "line\nbreak",
                                   "tab\there", "caf\u00e9", "\u0661\u0662", "a\x00", "quote\"d", "{\"json\": 1}"])
def test_anything_else_is_replaced_by_a_new_id(given):
    first, second = correlation_id(given), correlation_id(given)
    assert GENERATED.match(first) and first != second
