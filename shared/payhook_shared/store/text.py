"""Text from outside (a merchant's response, an error message) made storable in every supported database."""

from __future__ import annotations

import re

# PostgreSQL text cannot hold NUL, and a lone surrogate cannot be encoded as UTF-8 for either database.
_REFUSED = re.compile("[\x00\ud800-\udfff]")


def storable(text: str | None) -> str | None:
    """``text`` with every character a database would refuse replaced by U+FFFD; ``None`` stays ``None``."""
    if text is None:
        return None
    return _REFUSED.sub("\ufffd", text)
