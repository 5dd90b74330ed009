"""Mail actors: one per priority level, so alerts overtake receipts."""

from __future__ import annotations

import dramatiq

from payhook_shared.broker import RedisBroker
from payhook_shared.lazy import PerProcess
from payhook_shared.messages import SendEmail
from payhook_shared.priority import MAIL, Priority
from payhook_shared.workers import declare_actors

from .mailer import send
from .runtime import Runtime


def declare(broker: RedisBroker, runtime: PerProcess[Runtime]) -> dict[Priority, dramatiq.Actor]:
    """Declare the mail actors on ``broker``; each sends with this process's ``runtime``."""
    return declare_actors(broker, MAIL, lambda kwargs: send(runtime.get(), SendEmail.decode(kwargs)))
