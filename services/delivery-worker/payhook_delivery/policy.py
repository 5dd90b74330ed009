"""When to try again, by error category.

| category      | strategy                                                                  |
|---------------|---------------------------------------------------------------------------|
| network       | retry on the schedule (the endpoint may be restarting)                    |
| timeout       | retry on the schedule                                                     |
| tls           | retry on the schedule (certificates get fixed; the merchant is emailed)   |
| redirect      | retry on the schedule; never followed (the URL must be fixed)             |
| rate_limited  | honour Retry-After within bounds, else the schedule                       |
| auth          | retry on the schedule (usually a rotated secret or a proxy)               |
| gone (410)    | final: the delivery is dead and the endpoint disabled                     |
| blocked       | final: the URL resolves to an address webhooks may not reach              |
| client_error  | retry on the schedule                                                     |
| server_error  | retry on the schedule; a 503 with Retry-After is honoured within bounds   |

The schedule counts retries within the current round: an operator's retry
starts a new round from the first step. Every delay is spread by ±jitter so
endpoints that fail together do not recover into a thundering herd.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import random
from collections.abc import Sequence
from typing import Any

from payhook_shared import merchant_settings

from .errors import Category

FINAL = frozenset({Category.GONE, Category.BLOCKED})
HONOURS_RETRY_AFTER = frozenset({Category.RATE_LIMITED, Category.SERVER_ERROR})

def schedule_for(settings: dict[str, Any] | None, default: Sequence[float]) -> tuple[float, ...]:
    """The merchant's retry schedule: an explicit list, a named profile, or the default.

    The profiles (``standard``, ``aggressive``, ``gentle``, ``fast``) are
    ``payhook_shared.merchant_settings.RETRY_PROFILES``; ``standard`` is ``default``.
    """
    return merchant_settings.retry_schedule(settings, default)


def parse_retry_after(value: str | None, now: dt.datetime) -> float | None:
    """Seconds asked for by a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # str.isdigit() also takes "²", which float() refuses
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return max(0.0, (when - now).total_seconds())


def next_delay(attempts_in_round: int, category: Category, schedule: Sequence[float], jitter: float, *,
               retry_after: float | None = None, retry_after_bounds: tuple[float, float] = (1, 3600),
               rand: random.Random | None = None) -> float | None:
    """Seconds until the next attempt after ``attempts_in_round`` failures, or ``None`` to give up."""
    if category in FINAL or attempts_in_round > len(schedule):
        return None
    if retry_after is not None and category in HONOURS_RETRY_AFTER:
        low, high = retry_after_bounds
        return min(max(retry_after, low), high)
    base = schedule[attempts_in_round - 1]
    return max(0.0, base * (1 + (rand or random).uniform(-jitter, jitter)))
