"""Request parameters read the same way by the JSON API and the console: dates, and NUL refused.

Date filters (``since``, ``until``) go through ``read_time``: ``TimeField`` in
the API's schemas, ``parse_time`` in the console's forms. Both accept the same
forms and refuse the same values with a 400 naming the parameter, including
dates outside ``EARLIEST``..``LATEST``, where a time-zone shift or a query's
margin would leave the years Python can represent.

``refuse_nul`` runs before every request: PostgreSQL can neither store nor
compare text holding NUL, so a NUL in a path, a query parameter or a form field
would otherwise fail in the store, as a 503 and an error in the logs.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import request
from marshmallow import ValidationError, fields
from werkzeug.datastructures import MultiDict

from .errors import InvalidPayload

# Nothing was received before 1970, and a year of headroom keeps every shift or margin below year 10000.
EARLIEST = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
LATEST = dt.datetime(9999, 1, 1, tzinfo=dt.timezone.utc)
TIME_FORMS = "a date such as 2026-11-01 or a date-time such as 2026-11-01T08:30 or 2026-11-01T08:30:00+03:00"
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def read_time(value: str) -> dt.datetime:
    """``value`` (ISO 8601, UTC unless it names an offset) as an aware UTC datetime.

    Raises:
      ValueError: whose message says what a date must look like, or its range.
    """
    try:
        parsed = dt.datetime.fromisoformat(value.strip())
    except ValueError:
        raise ValueError(f"must be {TIME_FORMS} (UTC unless an offset is given)") from None
    out_of_range = ValueError(f"must be from {EARLIEST:%Y-%m-%d} to {LATEST:%Y-%m-%d} (UTC)")
    try:
        utc = parsed.astimezone(dt.timezone.utc) if parsed.tzinfo else parsed.replace(tzinfo=dt.timezone.utc)
    except OverflowError:
        raise out_of_range from None
    if not EARLIEST <= utc <= LATEST:
        raise out_of_range
    return utc


def parse_time(name: str, value: str) -> dt.datetime:
    """The date parameter ``name`` given as ``value``.

    Raises:
      InvalidPayload: naming ``name``.
    """
    try:
        return read_time(value)
    except ValueError as exc:
        raise InvalidPayload(f"{name}: {exc}", {name: [str(exc)]}) from None


class TimeField(fields.Field):
    """A date parameter of the API, read by ``read_time``; loads as an aware UTC datetime."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> dt.datetime:
        if not isinstance(value, str):
            raise ValidationError(f"must be a string: {TIME_FORMS}")
        try:
            return read_time(value)
        except ValueError as exc:
            raise ValidationError(str(exc)) from None

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> str | None:
        return None if value is None else value.isoformat()


def _check(values: MultiDict, where: str) -> None:
    for name, value in values.items(multi=True):
        if "\x00" in name or "\x00" in value:
            shown = name.replace("\x00", "\\0")[:40]
            raise InvalidPayload(f"{where} {shown}: must not contain NUL characters", {shown: ["contains NUL"]})


def refuse_nul() -> None:
    """``before_request``: refuse a NUL anywhere in the path, the query string or a form.

    Raises:
      InvalidPayload: naming the path, or the parameter or field that holds it.
    """
    if "\x00" in request.path:
        raise InvalidPayload("path: must not contain NUL characters")
    _check(request.args, "query parameter")
    if request.mimetype in FORM_TYPES:
        # Cached before the form is parsed, so a route that reads the raw body still gets it.
        request.get_data(cache=True)
        _check(request.form, "form field")
