"""The merchant as ingest sees it: a read-only profile, loaded in one round trip and kept per process.

A callback needs the merchant's token, settings and where its events go, not
ORM objects with identity maps and lazy relationships: one Core query joins
the merchant to its endpoints and the rows become frozen dataclasses, safe to
share between the requests of a worker.

On PostgreSQL the profiles are cached, and never trusted blindly: triggers bump
``merchants.config_version`` whenever what a profile holds changes, and the
ingest write inserts nothing unless the version it was given is still current
(see ``ingest``). A stale profile costs one more round trip, never a wrong write.
"""

from __future__ import annotations

import dataclasses
import functools
import threading
from typing import Any

from sqlalchemy import bindparam, select

from payhook_shared.events import selects
from payhook_shared.store import Endpoint, Merchant, Store


@dataclasses.dataclass(frozen=True)
class Route:
    """One endpoint of the merchant: whether, and for which event types, it takes events."""

    id: str
    enabled: bool
    event_types: tuple[str, ...] | None

    def accepts(self, event_type: str) -> bool:
        """Whether this endpoint's filter lets ``event_type`` through (as ``Endpoint.accepts``)."""
        return self.enabled and (not self.event_types or selects(self.event_types, event_type))


@dataclasses.dataclass(frozen=True)
class Profile:
    """A merchant's fields ingest reads, with its endpoints in id order."""

    id: str
    name: str
    notification_email: str | None
    callback_token: str
    settings: dict[str, Any]
    enabled: bool
    endpoints: tuple[Route, ...]
    version: int


@functools.cache
def _query() -> Any:
    return (select(Merchant.id, Merchant.name, Merchant.notification_email, Merchant.callback_token,
                   Merchant.settings, Endpoint.id, Endpoint.enabled, Endpoint.event_types, Merchant.config_version,
                   Merchant.enabled)
            .select_from(Merchant).outerjoin(Endpoint, Endpoint.merchant_id == Merchant.id)
            .where(Merchant.id == bindparam("merchant_id")).order_by(Endpoint.id))


def load(store: Store, merchant_id: str) -> Profile | None:
    """The merchant ``merchant_id`` with its endpoints, or ``None`` if there is none."""
    with store.read() as session:
        rows = session.connection().execute(_query(), {"merchant_id": merchant_id}).all()
    if not rows:
        return None
    first = rows[0]
    routes = tuple(Route(id=row[5], enabled=row[6], event_types=tuple(row[7]) if row[7] is not None else None)
                   for row in rows if row[5] is not None)
    return Profile(id=first[0], name=first[1], notification_email=first[2], callback_token=first[3],
                   settings=first[4] or {}, enabled=first[9], endpoints=routes, version=first[8])


class Directory:
    """Merchant profiles by id: cached per process on PostgreSQL (at most ``size``), read each time on SQLite.

    On both, the last profile read of each merchant is kept for ``last_known``: what authenticates a
    callback URL while the store cannot be read (``spool``).
    """

    def __init__(self, store: Store, size: int = 10_000):
        self._store = store
        self._size = size
        self._cached = store.dialect == "postgresql"
        self._profiles: dict[str, Profile] = {}
        self._lock = threading.Lock()

    def get(self, merchant_id: str) -> Profile | None:
        """The merchant's profile, ``None`` for an unknown id (which is never cached)."""
        profile = self._profiles.get(merchant_id) if self._cached else None
        if profile is None:
            profile = load(self._store, merchant_id)
            if profile is not None:
                with self._lock:
                    if len(self._profiles) >= self._size:
                        # Oldest first: dicts keep insertion order.
                        self._profiles.pop(next(iter(self._profiles)))
                    self._profiles[merchant_id] = profile
        return profile

    def last_known(self, merchant_id: str) -> Profile | None:
        """The profile this process last read for ``merchant_id``, however old; ``None`` if it never read one."""
        return self._profiles.get(merchant_id)

    def forget(self, merchant_id: str) -> None:
        """Drop a profile found stale; the next ``get`` reads it again."""
        with self._lock:
            self._profiles.pop(merchant_id, None)
