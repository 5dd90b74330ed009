"""Tolerant field types for provider payloads, and error reporting.

Providers are inconsistent: numbers arrive as strings and strings as numbers,
lists as single objects. These fields accept every form seen in the wild and
turn each into one Python type, so schemas stay strict about *meaning* while
lenient about *spelling*.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from typing import Any

from marshmallow import ValidationError, fields

from ..errors import DecodeError

# Daraja timestamps are East Africa Time, which has no daylight saving.
EAT = dt.timezone(dt.timedelta(hours=3), "EAT")
MAX_DEPTH = 32


class Code(fields.Field):
    """A result code given as a number or a string (``0``, ``"0"``, ``"R000002"``); loads as ``str``."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise ValidationError("must be a number or a string")
        text = str(value).strip()
        if not text or len(text) > 40:
            raise ValidationError("must be 1 to 40 characters")
        return text


class Text(fields.Field):
    """A short identifier or description given as a string or a number; loads as ``str``."""

    def __init__(self, max_length: int = 200, allow_empty: bool = False, **kwargs: Any):
        super().__init__(**kwargs)
        self.max_length = max_length
        self.allow_empty = allow_empty

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ValidationError("must be a string")
        text = str(value).strip()
        if not text and not self.allow_empty:
            raise ValidationError("must not be empty")
        if len(text) > self.max_length:
            raise ValidationError(f"must be at most {self.max_length} characters")
        return text


class OneOrMany(fields.List):
    """A list that a provider may also send as a single object."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> list[Any]:
        if isinstance(value, dict):
            value = [value]
        return super()._deserialize(value, attr, data, **kwargs)


_DOTTED = re.compile(r"^(\d{2})\.(\d{2})\.(\d{4}) (\d{2}):(\d{2}):(\d{2})$")


def parse_daraja_time(value: Any) -> dt.datetime | None:
    """``20191219102115`` (number or string) or ``"06.07.2024 22:48:52"``, in EAT, as UTC.

    Returns ``None`` for anything else: a timestamp is informative, never a
    reason to refuse a payment.
    """
    if isinstance(value, bool):
        return None
    text = str(value).strip() if isinstance(value, (int, str)) else ""
    try:
        if len(text) == 14 and text.isascii() and text.isdigit():
            # Sliced, not strptime: the same checks (datetime refuses month 13) at a tenth of the cost.
            local = dt.datetime(int(text[:4]), int(text[4:6]), int(text[6:8]), int(text[8:10]), int(text[10:12]),
                                int(text[12:]))
        elif match := _DOTTED.match(text):
            day, month, year, hh, mm, ss = (int(g) for g in match.groups())
            local = dt.datetime(year, month, day, hh, mm, ss)
        else:
            return None
    except ValueError:
        return None
    return local.replace(tzinfo=EAT).astimezone(dt.timezone.utc)


def _check_tree(value: Any, limit: int) -> None:
    """Refuse nesting deeper than ``limit`` and strings no database can store.

    A lone surrogate (``"\\ud800"``) cannot be encoded as UTF-8 and PostgreSQL
    text cannot hold NUL; both would otherwise fail only at the store.
    """
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            raise DecodeError(f"JSON nested deeper than {limit} levels")
        if isinstance(node, dict):
            stack.extend((k, depth) for k in node)
            stack.extend((v, depth + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)
        elif isinstance(node, str):
            if "\x00" in node:
                raise DecodeError("JSON strings must not contain NUL (\\u0000)")
            try:
                node.encode("utf-8")
            except UnicodeEncodeError:
                raise DecodeError("JSON strings must be valid Unicode (lone surrogate escape)") from None


def _finite(text: str) -> float:
    number = float(text)
    # Too small is refused like too large: 1e-999999999 would otherwise read as exactly 0.
    underflow = number == 0 and any(c in "123456789" for c in text.lower().partition("e")[0])
    if math.isinf(number) or underflow:
        raise ValueError(f"number {text[:20]}... is out of range")
    return number


def parse_json(body: bytes) -> dict[str, Any]:
    """Decode a request body that must be one JSON object.

    Raises:
      DecodeError: for invalid UTF-8 or JSON, a non-object, NaN/Infinity or numbers out of float range,
        nesting deeper than 32, or strings holding NUL or lone surrogates.
    """
    def _reject_constant(name: str) -> Any:
        raise ValueError(f"{name} is not valid JSON")

    try:
        # Decode here: json.loads would also guess UTF-16/32, which the store keeps as UTF-8 text.
        value = json.loads(body.decode("utf-8"), parse_constant=_reject_constant, parse_float=_finite)
    except RecursionError:
        raise DecodeError("JSON nested too deeply") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise DecodeError(f"body is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise DecodeError(f"body must be a JSON object, got {_json_type(value)}")
    # Without a \u escape no string can hold NUL or a lone surrogate (raw control characters and invalid
    # UTF-8 are refused above), and with few brackets nothing nests deep: most bodies skip the walk.
    if b"\\u" in body or body.count(b"{") + body.count(b"[") > MAX_DEPTH:
        _check_tree(value, MAX_DEPTH)
    return value


def _json_type(value: Any) -> str:
    return {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(type(value), "a number")


_PLAIN = {"Invalid input type.": "must be a JSON object."}


def validation_message(messages: Any, prefix: str = "") -> list[str]:
    """Flatten marshmallow's nested error dict to ``["Body.stkCallback.CheckoutRequestID: ..."]``."""
    if isinstance(messages, dict):
        out: list[str] = []
        for key, value in messages.items():
            # marshmallow files whole-object errors under "_schema"; they belong to the object itself.
            path = prefix if key == "_schema" else (f"{prefix}.{key}" if prefix else str(key))
            out.extend(validation_message(value, path))
        return out
    if isinstance(messages, list) and all(isinstance(m, str) for m in messages):
        text = " ".join(_PLAIN.get(m, m) for m in messages)
        return [f"{prefix}: {text}" if prefix else text]
    if isinstance(messages, list):
        return [line for m in messages for line in validation_message(m, prefix)]
    return [f"{prefix}: {messages}" if prefix else str(messages)]


def load(schema: Any, payload: dict[str, Any]) -> dict[str, Any]:
    """Validate ``payload`` with a marshmallow schema.

    Raises:
      DecodeError: whose message names every offending field.
    """
    try:
        return schema.load(payload)
    except ValidationError as exc:
        problems = validation_message(exc.messages)
        raise DecodeError("; ".join(problems), exc.messages) from None
