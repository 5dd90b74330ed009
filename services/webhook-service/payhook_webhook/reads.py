"""What the JSON API's and the console's reads share: the caller's scope, and how searches use the indexes.

``Scope`` is the one place the merchant restriction is applied: a merchant key
asking for another merchant's event, delivery or endpoint finds nothing,
exactly as for an unknown id.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from sqlalchemy import Select, func

from payhook_shared import ids
from payhook_shared.store import Event

from .auth import Principal

# An event's id and its received_at are taken together when it is recorded: a received range is also
# an id range, give or take far less than this.
ID_TIME_MARGIN = dt.timedelta(minutes=15)
# From three digits a phone suffix matches about one number in a thousand or fewer.
RARE_SUFFIX_DIGITS = 3


@dataclasses.dataclass(frozen=True)
class Scope:
    """What a principal may see: every merchant (admin) or one."""

    merchant_id: str | None

    @classmethod
    def of(cls, principal: Principal) -> "Scope":
        """The scope of ``principal``."""
        return cls(principal.merchant_id)

    @property
    def is_admin(self) -> bool:
        """Whether this scope covers every merchant."""
        return self.merchant_id is None

    def only(self, stmt: Select, column: Any) -> Select:
        """``stmt`` restricted to this scope's merchant through ``column``."""
        return stmt if self.merchant_id is None else stmt.where(column == self.merchant_id)

    def merchant_filter(self, requested: str | None) -> str | None:
        """The merchant a filter may name: anything for an admin, always its own for a merchant."""
        return requested or None if self.is_admin else self.merchant_id


def phone_suffix(dialect: str, digits: str) -> Any:
    """Events whose phone ends with ``digits`` (digits only, checked by the caller)."""
    if dialect == "postgresql":
        # A suffix is a prefix of the reversed number: ix_events_phone_reversed answers it.
        return func.reverse(Event.phone).like(f"{digits[::-1]}%")
    return Event.phone.like(f"%{digits}")


def received_between(stmt: Select, since: dt.datetime | None, until: dt.datetime | None) -> Select:
    """``stmt`` narrowed to events received in ``[since, until)``, as an id range too so the id index serves it."""
    if since:
        stmt = stmt.where(Event.received_at >= since, Event.id >= ids.earliest("evt", since - ID_TIME_MARGIN))
    if until:
        stmt = stmt.where(Event.received_at < until, Event.id < ids.earliest("evt", until + ID_TIME_MARGIN))
    return stmt
