"""Public identifiers: ``<prefix>_<time><random>`` in lower-case hex.

Hex is deliberate: Safaricom refuses callback URLs containing words such as
``cmd``, ``sql`` or ``exe``, and no hex string can spell any of them. The
leading millisecond timestamp keeps ids roughly time-ordered, which keeps
B-tree inserts local and keyset pagination natural.
"""

import datetime as dt
import secrets
import time


def new_id(prefix: str) -> str:
    """A new id such as ``evt_018c4f2a9b3e5d0f1a2b3c4d5e6f7a8b``."""
    return f"{prefix}_{int(time.time() * 1000):012x}{secrets.token_hex(8)}"


def earliest(prefix: str, when: dt.datetime) -> str:
    """The smallest id ``new_id(prefix)`` makes at ``when`` or later: a bound for ranges of ids by time."""
    return f"{prefix}_{int(when.timestamp() * 1000):012x}"


def new_token() -> str:
    """An unguessable URL token (128 bits, hex)."""
    return secrets.token_hex(16)
