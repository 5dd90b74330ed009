"""Custom headers a merchant sets on an endpoint, sent with every webhook to it.

The rules live here because two places apply them: the API's schema refuses a
header when it is set, and the delivery-worker merges the stored headers under
its own at every attempt, so a row written some other way still cannot
replace the signature, the body's framing or the connection's behaviour.

Values are kept as given (they are often credentials for the merchant's own
gateway, such as ``Authorization``), shown back to the merchant through the
API and the console, and never logged: the audit log records header names only.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

MAX_HEADERS = 20
MAX_NAME_LENGTH = 100
MAX_VALUE_LENGTH = 1000
# Together, so twenty headers cannot add more to every request than a sensible server accepts.
MAX_TOTAL_BYTES = 8192

# RFC 9110 token characters.
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
# Payhook sets these (the body and its framing, the signature, who is calling, where to), or they
# belong to one hop or change how the request is sent rather than what it says.
_RESERVED = frozenset({
    "host", "user-agent", "expect",
    "connection", "keep-alive", "te", "trailer", "transfer-encoding", "upgrade",
})
_RESERVED_PREFIXES = ("webhook-", "proxy-", "content-")
_REDACTED = "[redacted]"


def problem(name: str, value: object) -> str | None:
    """What is wrong with one custom header, or ``None`` when it may be sent."""
    if not isinstance(name, str) or not name or len(name) > MAX_NAME_LENGTH or not _TOKEN.match(name):
        return f"{str(name)[:50]!r} is not a valid header name (letters, digits and !#$%&'*+.^_`|~- only, " \
               f"at most {MAX_NAME_LENGTH})"
    lowered = name.lower()
    if lowered in _RESERVED or lowered.startswith(_RESERVED_PREFIXES):
        return f"{name} is set by Payhook or by the connection and cannot be replaced"
    if not isinstance(value, str):
        return f"{name}: the value must be a string"
    if len(value) > MAX_VALUE_LENGTH:
        return f"{name}: the value must be at most {MAX_VALUE_LENGTH} characters"
    if any(ch in value for ch in "\r\n\0"):
        return f"{name}: the value must not contain CR, LF or NUL"
    return None


def problems(headers: Mapping[str, object]) -> list[str]:
    """Everything wrong with a set of custom headers (empty when they may all be sent)."""
    if len(headers) > MAX_HEADERS:
        return [f"at most {MAX_HEADERS} headers"]
    found = [p for p in (problem(name, value) for name, value in headers.items()) if p]
    seen: set[str] = set()
    for name in headers:
        if isinstance(name, str) and name.lower() in seen:
            found.append(f"{name} is given twice (header names ignore case)")
        seen.add(str(name).lower())
    if not found and sum(len(n) + len(str(v)) + 4 for n, v in headers.items()) > MAX_TOTAL_BYTES:
        found.append(f"names and values together must be at most {MAX_TOTAL_BYTES} bytes")
    return found


def outgoing(custom: Mapping[str, str] | None, own: Mapping[str, str]) -> dict[str, str]:
    """The headers of one attempt: Payhook's ``own``, then each valid custom header whose name it does not use."""
    taken = {name.lower() for name in own}
    merged = dict(own)
    for name, value in (custom or {}).items():
        if name.lower() not in taken and problem(name, value) is None:
            merged[name] = value
    return merged


def redacted(headers: Mapping[str, str] | None) -> dict[str, str] | None:
    """``headers`` with every value hidden, for the audit log."""
    return None if headers is None else {name: _REDACTED for name in headers}
