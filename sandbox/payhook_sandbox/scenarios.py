"""What happens to a request: its result code and whether, when and where its callback is sent.

A request may name its own scenario with a token such as ``SBX1032`` in a free-text field
(AccountReference or TransactionDesc for STK Push; Remarks or Occasion for the result APIs), like a
payment provider's test card numbers; otherwise the sandbox draws one from its configured mix.
docs/sandbox.md lists the tokens.
"""

from __future__ import annotations

import dataclasses
import random
import re

#: ``SBX`` + result code, then ``D`` (drop: no callback), ``L`` (late callback) or ``T`` (a QueueTimeOut
#: instead of a result; result APIs only), then ``W<seconds>`` (the delay before the result).
TOKEN = re.compile(r"SBX(?P<code>[0-9]+)(?P<fate>[DLT])?(?:W(?P<wait>[0-9]+(?:\.[0-9]+)?))?", re.I)

FATES = ("callback", "drop", "late", "timeout")


@dataclasses.dataclass(frozen=True)
class Scenario:
    """The outcome of one request."""

    result_code: str
    """The result code its callback (and STK Push Query) carries."""
    fate: str
    """One of ``FATES``: sent after the delay, never sent, sent after the late delay, or a QueueTimeOut."""
    delay: float
    """Seconds until the transaction is final (and, unless late or dropped, its callback sent)."""


@dataclasses.dataclass(frozen=True)
class Mix:
    """The outcomes drawn for requests that name no scenario."""

    outcomes: tuple[tuple[str, float], ...] = (("0", 1.0),)
    """Result codes and their weights."""
    drop_ratio: float = 0.0
    """Share of requests whose callback is never sent."""
    late_ratio: float = 0.0
    """Share of requests whose callback is sent after the late delay."""
    callback_delay: float = 2.0
    """Seconds until a request is final and its callback sent."""
    late_delay: float = 60.0
    """Seconds until a late callback is sent."""


def named(*fields: object) -> re.Match | None:
    """The first scenario token in ``fields`` (strings; other values are skipped)."""
    for field in fields:
        if isinstance(field, str) and (match := TOKEN.search(field)):
            return match
    return None


def decide(mix: Mix, rng: random.Random, *fields: object) -> Scenario:
    """The scenario a request's ``fields`` name, or one drawn from ``mix``.

    Both draws are made even when a token decides, so one request's token does not shift the outcomes
    drawn for the requests after it.
    """
    codes, weights = zip(*mix.outcomes)
    drawn_code = rng.choices(codes, weights)[0]
    roll = rng.random()
    drawn_fate = "drop" if roll < mix.drop_ratio else "late" if roll < mix.drop_ratio + mix.late_ratio else "callback"
    match = named(*fields)
    if match is None:
        return Scenario(drawn_code, drawn_fate, mix.callback_delay)
    fate = {"D": "drop", "L": "late", "T": "timeout"}.get((match["fate"] or "").upper(), "callback")
    delay = float(match["wait"]) if match["wait"] else mix.callback_delay
    return Scenario(str(int(match["code"])), fate, delay)
