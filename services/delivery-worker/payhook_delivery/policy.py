"""When to try again: the retry schedule, with jitter."""

from __future__ import annotations

import random
from collections.abc import Sequence

from .errors import Category

# Categories where trying again cannot help.
FINAL = frozenset({Category.GONE, Category.BLOCKED})


def next_delay(attempts: int, category: Category, schedule: Sequence[float], jitter: float,
               rand: random.Random | None = None) -> float | None:
    """Seconds until the next attempt after ``attempts`` failed ones, or ``None`` to give up.

    The first attempt is immediate; retry *n* waits ``schedule[n-1]`` seconds,
    spread by ±``jitter`` so endpoints that fail together do not recover into a
    thundering herd.
    """
    if category in FINAL or attempts > len(schedule):
        return None
    base = schedule[attempts - 1]
    spread = (rand or random).uniform(-jitter, jitter)
    return max(0.0, base * (1 + spread))
