"""Per-endpoint rate limit and concurrency cap, shared by every worker process through Redis.

An endpoint may set ``rate_limit_per_second`` (at most N attempts started in
any one-second window) and ``max_in_flight`` (at most N attempts under way at
once); ``None`` means no limit. One Lua script checks and takes both at once,
using Redis's clock, so processes on different hosts agree.

Dramatiq's own rate limiters were not used: ``ConcurrentRateLimiter`` keeps a
bare counter whose expiry every acquire renews, so a slot held by a worker
that died is never given back while traffic continues. Here each slot is a
member of a sorted set scored by its expiry (the delivery's claim lease), so a
dead worker's slot frees itself when its lease would have ended.

A worker that finds its endpoint at a limit does not wait: ``deliver`` hands
the claim back (``jobs.release``) with the delay ``acquire`` reports.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import logging
import random
import uuid
from collections.abc import Iterator

import redis

from payhook_shared.jobs import release
from payhook_shared.store import Delivery, Store
from payhook_shared.store.models import utcnow

log = logging.getLogger(__name__)

_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local token, max_in_flight, rate = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local lease_ms, busy_ms = tonumber(ARGV[4]), tonumber(ARGV[5])
local wait = 0
if max_in_flight > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
  if redis.call('ZCARD', KEYS[1]) >= max_in_flight then wait = busy_ms end
end
if rate > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - 1000)
  if redis.call('ZCARD', KEYS[2]) >= rate then
    local oldest = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
    wait = math.max(wait, tonumber(oldest[2]) + 1000 - now)
  end
end
if wait > 0 then return wait end
if max_in_flight > 0 then
  redis.call('ZADD', KEYS[1], now + lease_ms, token)
  redis.call('PEXPIRE', KEYS[1], lease_ms)
end
if rate > 0 then
  redis.call('ZADD', KEYS[2], now, token)
  redis.call('PEXPIRE', KEYS[2], 1000)
end
return 0
"""


@dataclasses.dataclass(frozen=True)
class Grant:
    """The outcome of asking for a slot: ``wait`` is 0.0 when granted, else seconds to wait first."""

    wait: float
    token: str | None = None

    @property
    def granted(self) -> bool:
        """Whether the attempt may start now."""
        return self.wait == 0.0


class Limiter:
    """Takes and returns per-endpoint slots in Redis.

    ``lease`` bounds how long a slot can outlive a worker that died holding it;
    ``busy_delay`` is the wait reported when an endpoint is at ``max_in_flight``
    (a rate limit reports when its window next has room).
    """

    def __init__(self, client: redis.Redis, *, lease: float, busy_delay: float, prefix: str = "payhook:limit"):
        self.client = client
        self.lease_ms = int(lease * 1000)
        self.busy_ms = max(1, int(busy_delay * 1000))
        self.prefix = prefix
        self._acquire = client.register_script(_ACQUIRE)

    def _keys(self, endpoint_id: str) -> list[str]:
        # One hash tag, so both keys live on the same Redis Cluster slot as the script needs.
        return [f"{self.prefix}:{{{endpoint_id}}}:in_flight", f"{self.prefix}:{{{endpoint_id}}}:rate"]

    def acquire(self, endpoint_id: str, rate_limit_per_second: int | None, max_in_flight: int | None) -> Grant:
        """Take a slot for one attempt to ``endpoint_id`` if both of its limits allow one now."""
        if not rate_limit_per_second and not max_in_flight:
            return Grant(0.0)
        token = uuid.uuid4().hex
        wait_ms = self._acquire(keys=self._keys(endpoint_id), args=[
            token, max_in_flight or 0, rate_limit_per_second or 0, self.lease_ms, self.busy_ms])
        if wait_ms:
            # Spread the deferred deliveries so they do not all come back in the same instant.
            return Grant(int(wait_ms) / 1000 * random.uniform(1.0, 1.25))
        return Grant(0.0, token if max_in_flight else None)

    def release(self, endpoint_id: str, grant: Grant) -> None:
        """Return an in-flight slot; the rate window keeps its entry, since the attempt did start."""
        if grant.token:
            self.client.zrem(self._keys(endpoint_id)[0], grant.token)

    @contextlib.contextmanager
    def slot(self, endpoint_id: str, rate_limit_per_second: int | None,
             max_in_flight: int | None) -> Iterator[Grant]:
        """``acquire`` for the block's duration; the slot is returned however the block ends.

        Returning it never raises: by then the attempt has been made, and a
        failure here would leave its outcome unrecorded and the delivery to be
        sent again. A slot Redis could not take back frees itself at the lease's end.
        """
        grant = self.acquire(endpoint_id, rate_limit_per_second, max_in_flight)
        try:
            yield grant
        finally:
            if grant.granted:
                try:
                    self.release(endpoint_id, grant)
                except redis.RedisError:
                    log.warning("could not return endpoint %s's slot; it frees itself at the lease's end",
                                endpoint_id, exc_info=True)


def defer(store: Store, delivery_id: str, wait: float, now: dt.datetime | None = None) -> None:
    """Hand a claimed delivery back untried, due again ``wait`` seconds after ``now``; no attempt is spent."""
    with store.write() as session:
        release(session, Delivery, delivery_id, (now or utcnow()) + dt.timedelta(seconds=wait))
    log.info("endpoint at its limit; delivery deferred %.2f s", wait)
