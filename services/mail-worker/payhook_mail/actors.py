"""Mail actors: one per priority level, so alerts overtake receipts."""

from __future__ import annotations

from collections.abc import Callable

import dramatiq

from payhook_shared.messages import SendEmail
from payhook_shared.priority import MAIL, Priority, actor_name, queue_name

from . import runtime
from .broker import broker
from .mailer import send

# Retries are the store's business (see mailer.py), never Dramatiq's.
ACTOR_OPTIONS = {"max_retries": 0, "time_limit": 120_000}


def _actor_for(priority: Priority) -> dramatiq.Actor:
    def handle(**kwargs: object) -> None:
        send(runtime.get(), SendEmail.decode(kwargs))

    handle.__name__ = actor_name(MAIL, priority)
    return dramatiq.actor(
        handle, broker=broker, actor_name=actor_name(MAIL, priority),
        queue_name=queue_name(MAIL, priority), priority=int(priority), **ACTOR_OPTIONS,
    )


ACTORS: dict[Priority, Callable] = {p: _actor_for(p) for p in Priority}
