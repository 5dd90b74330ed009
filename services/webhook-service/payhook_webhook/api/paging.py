"""Keyset paging of the API's lists, as the request's ``?limit=&after=<id>`` asks."""

from __future__ import annotations

from typing import Any, Callable

from sqlalchemy import Select
from sqlalchemy.orm import Session

from ..schemas import PageQuerySchema, query
from ..services.common import page


def requested_page(session: Session, stmt: Select, id_column: Any, render: Callable[[Any], Any]) -> dict[str, Any]:
    """The page of ``stmt``'s rows the request asks for: ``data``, ``has_more`` and ``next_after``."""
    params = query(PageQuerySchema())
    return page(session, stmt, id_column, render, params["limit"], params["after"])
