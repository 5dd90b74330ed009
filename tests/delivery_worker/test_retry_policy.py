"""Retry strategy by category, Retry-After, merchant profiles and schedule rounds."""

from __future__ import annotations

import datetime as dt
import random

import pytest

from payhook_delivery import policy
from payhook_delivery.errors import Category

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


def test_schedule_steps_then_gives_up():
    schedule = (5, 300)
    assert policy.next_delay(1, Category.SERVER_ERROR, schedule, 0.0) == 5
    assert policy.next_delay(2, Category.TIMEOUT, schedule, 0.0) == 300
    assert policy.next_delay(3, Category.NETWORK, schedule, 0.0) is None


@pytest.mark.parametrize("category", [Category.GONE, Category.BLOCKED])
def test_final_categories_never_retry(category):
    assert policy.next_delay(1, category, (5, 300), 0.0) is None


@pytest.mark.parametrize("category", [Category.AUTH, Category.CLIENT_ERROR, Category.REDIRECT, Category.TLS])
def test_other_failures_follow_the_schedule(category):
    assert policy.next_delay(1, category, (7,), 0.0) == 7


def test_jitter_stays_within_twenty_percent():
    rand = random.Random(1)
    delays = [policy.next_delay(1, Category.NETWORK, (100,), 0.2, rand=rand) for _ in range(500)]
    assert 80 <= min(delays) < 85 and 115 < max(delays) <= 120


def test_retry_after_is_honoured_within_bounds_for_429_and_503_only():
    assert policy.next_delay(1, Category.RATE_LIMITED, (5,), 0.0, retry_after=30) == 30
    assert policy.next_delay(1, Category.SERVER_ERROR, (5,), 0.0, retry_after=0) == 1
    assert policy.next_delay(1, Category.RATE_LIMITED, (5,), 0.0, retry_after=10**6) == 3600
    assert policy.next_delay(1, Category.CLIENT_ERROR, (5,), 0.0, retry_after=30) == 5


def test_parse_retry_after_seconds_and_http_date():
    assert policy.parse_retry_after("120", NOW) == 120
    assert policy.parse_retry_after("Thu, 01 Jan 2026 00:01:00 GMT", NOW) == 60
    assert policy.parse_retry_after("soon", NOW) is None
    assert policy.parse_retry_after(None, NOW) is None


def test_parse_retry_after_ignores_non_ascii_digits():
    # HTTP headers arrive decoded as ISO-8859-1: a byte 0xB2 is "²", which str.isdigit() accepts.
    assert policy.parse_retry_after("\xb2", NOW) is None
    assert policy.parse_retry_after("1\x00", NOW) is None


def test_merchant_schedule_overrides():
    default = (5, 300)
    assert policy.schedule_for({}, default) == default
    assert policy.schedule_for({"retry": {"profile": "fast"}}, default) == (2, 4, 8)
    assert policy.schedule_for({"retry": {"schedule": [1, 1, 1, 1]}}, default) == (1, 1, 1, 1)
    assert policy.schedule_for({"retry": {"schedule": ["x"]}}, default) == default
