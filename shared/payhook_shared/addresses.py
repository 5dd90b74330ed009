"""Email addresses and header text: the one rule every service applies to what goes into an email's headers.

The API, the console and the settings schema accept an address only if the
mail-worker will send to it, so nothing is saved that later dies as "invalid
address". The rule is deliberately narrower than RFC 5322: an unquoted
dot-atom local part of ASCII, ``@``, and a host name of at least two
labels (``buyer@shop.example``); no quoted local parts, address literals,
comments, display names or non-ASCII, none of which a payment notice needs.
"""

from __future__ import annotations

import re
from typing import Any

from marshmallow import ValidationError, fields

MAX_LENGTH = 254  # RFC 5321: the longest path an SMTP server must take
MAX_LOCAL = 64
INVALID = "Not a valid email address."

_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_ADDRESS = re.compile(rf"(?P<local>{_ATOM}(?:\.{_ATOM})*)@(?:{_LABEL}\.)+(?:[A-Za-z]{{2,63}}|xn--[A-Za-z0-9-]{{1,59}})",
                      re.ASCII)
# Control characters (C0, DEL, C1) and the Unicode line and paragraph separators, which some mail
# software also takes for line breaks.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
_SPACES = re.compile(r"\s{2,}")


def is_valid(address: Any) -> bool:
    """Whether ``address`` is one the mail-worker sends to."""
    if not isinstance(address, str) or len(address) > MAX_LENGTH:
        return False
    match = _ADDRESS.fullmatch(address)
    return match is not None and len(match.group("local")) <= MAX_LOCAL


def valid_or_none(address: Any) -> str | None:
    """``address`` if it is valid, else ``None``: for addresses a provider sends, which inform but never refuse."""
    return address if is_valid(address) else None


def header_text(value: str, limit: int = 998) -> str:
    """``value`` on one line, for a header or subject: control characters become spaces, runs of spaces one.

    ``limit`` is RFC 5322's line length; longer text is cut, since a subject is for reading, not a record.
    """
    return _SPACES.sub(" ", _CONTROL.sub(" ", value)).strip()[:limit]


class EmailAddress(fields.String):
    """A marshmallow field holding one address by ``is_valid``: what the API, console and settings accept."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        text = super()._deserialize(value, attr, data, **kwargs)
        if not is_valid(text):
            raise ValidationError(INVALID)
        return text
