"""The spool: where an authenticated M-Pesa callback waits while the store cannot record it.

Safaricom never sends a callback twice, so the ``503`` that makes a gateway retry loses an M-Pesa
callback for good. When the store fails to record a callback that came on a valid URL and passed its
schema, the callback is added to a Redis stream (``payhook:spool``, one ``XADD``: the raw body, the
merchant, the kind and, for a C2B validation, the decision already answered) and the provider gets its
usual answer. Only when Redis refuses too is the answer ``503``.

The URL is authenticated as always, against the merchant's token; when the store cannot be read, against
the profile this process last read (``merchants.Directory.last_known``). A process that never read the
merchant, e.g. one started during the outage, cannot tell a valid URL from a forged one and answers
``503``; a token changed during the outage is seen only once the store is back.

Durable means Redis's append-only file: ``appendonly yes`` is required (with ``SPOOL_REQUIRE_AOF``, the
default, a Redis without it is refused, so the answer is ``503`` rather than a promise kept in memory).
Redis writes each command to the file before answering it, so a killed Redis or web pod loses nothing;
with ``appendfsync everysec`` a crash of the Redis *host* may lose the last second, with ``always``
nothing. Redis must not evict (``maxmemory-policy noeviction``, as Dramatiq requires anyway).

A C2B validation is decided as always, from the profile in hand (``accept_all``, ``rules`` and ``forward``
need no store), answered at once, and its decision spooled with it, so draining never decides again.

``drain.Drainer`` moves spooled callbacks into the store once it answers again.
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from flask import current_app, g, request

from payhook_shared.store.models import utcnow

from . import c2b, metrics
from .errors import StoreUnavailable

log = logging.getLogger(__name__)

STREAM = "payhook:spool"


class NotDurable(Exception):
    """The spool's Redis keeps no append-only file, so a spooled callback would not survive a restart."""


def put(merchant_id: str, kind: str, raw: bytes, decision: c2b.Decision | None, cause: BaseException) -> str:
    """Spool the current request's callback, which the store refused with ``cause``; returns the entry id.

    Raises:
      StoreUnavailable: Redis refused too, or keeps no append-only file (with ``SPOOL_REQUIRE_AOF``).
    """
    app = current_app
    client = app.extensions["payhook.broker"].client
    fields: dict[str, Any] = {"merchant_id": merchant_id, "kind": kind, "body": raw,
                              "content_type": (request.content_type or "")[:200],
                              "request_id": g.get("request_id", ""), "spooled_at": utcnow().isoformat()}
    if decision is not None:
        fields.update(decision_code=decision.code, decision_reason=decision.reason)
    try:
        if app.extensions["payhook.settings"].spool_require_aof and not client.info("persistence").get("aof_enabled"):
            raise NotDurable("Redis has appendonly off")
        entry = client.xadd(STREAM, fields).decode()
    except (redis.RedisError, NotDurable) as exc:
        log.error("could not record a %s callback (%s) nor spool it (%s: %s); answering 503", kind,
                  type(cause).__name__, type(exc).__name__, exc)
        raise StoreUnavailable("the callback could be neither recorded nor spooled; retry later") from exc
    metrics.SPOOLED.labels(kind).inc()
    log.warning("the store could not record a %s callback (%s); spooled as %s", kind, type(cause).__name__, entry)
    return entry


def waiting(client: redis.Redis) -> int:
    """How many spooled callbacks wait for the store."""
    return client.xlen(STREAM)
