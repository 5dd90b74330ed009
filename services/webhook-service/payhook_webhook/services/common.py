"""What every listing shares: keyset paging and time formatting."""

from __future__ import annotations

import datetime as dt
from typing import Any, Callable

from sqlalchemy import Select
from sqlalchemy.orm import Session


def iso(value: dt.datetime | None) -> str | None:
    """``value`` as ISO 8601 with a ``Z`` for UTC, or ``None``."""
    return value.isoformat().replace("+00:00", "Z") if value else None


def page(session: Session, stmt: Select, id_column: Any, render: Callable[[Any], Any], limit: int,
         after: str | None) -> dict[str, Any]:
    """One keyset page of ``stmt``'s rows by ``id_column``, each rendered: ``data``, ``has_more``, ``next_after``.

    Ids grow with time, so ``WHERE id > :after ORDER BY id`` is stable under inserts and never scans
    skipped rows the way OFFSET does.
    """
    if after is not None:
        stmt = stmt.where(id_column > after)
    rows = session.scalars(stmt.order_by(id_column).limit(limit + 1)).all()
    has_more = len(rows) > limit
    rows = rows[:limit]
    return {
        "data": [render(row) for row in rows],
        "has_more": has_more,
        "next_after": rows[-1].id if has_more else None,
    }
