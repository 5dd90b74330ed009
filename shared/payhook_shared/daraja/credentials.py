"""A merchant's Daraja credentials in the clear, as the client needs them; never shown, never logged.

The store keeps the secret fields encrypted (``crypto.Cipher``, one ciphertext column each in
``daraja_credentials``); ``from_row`` decrypts them only when a call to Daraja needs them.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from .crypto import Cipher

SANDBOX = "sandbox"
PRODUCTION = "production"
ENVIRONMENTS = (SANDBOX, PRODUCTION)
#: Fields kept encrypted at rest; shortcode and environment are not secret (the shortcode is on every receipt).
SECRET_FIELDS = ("consumer_key", "consumer_secret", "passkey", "initiator_name", "security_credential")


@dataclasses.dataclass(frozen=True, repr=False)
class DarajaCredentials:
    """One merchant's Daraja app and shortcode.

    ``cache_id`` names this version of the credentials (row id and version): the access token is
    cached under it, so changed credentials never use a token fetched with the old ones.
    ``passkey`` is needed for STK Push, ``initiator_name`` and ``security_credential`` for
    Transaction Status; either pair may be empty when the merchant does not use it.
    """

    cache_id: str
    environment: str
    shortcode: str
    consumer_key: str
    consumer_secret: str
    passkey: str = ""
    initiator_name: str = ""
    security_credential: str = ""

    def __repr__(self) -> str:
        # Secrets must not reach a log or a traceback through repr().
        return f"DarajaCredentials(cache_id={self.cache_id!r}, environment={self.environment!r}, " \
               f"shortcode={self.shortcode!r})"

    @classmethod
    def from_row(cls, row: Any, cipher: Cipher) -> "DarajaCredentials":
        """The credentials stored in ``row`` (a ``DarajaCredential``), decrypted with ``cipher``.

        Raises:
          CredentialsError: when no configured key decrypts them.
        """
        plain = {name: cipher.decrypt(getattr(row, f"{name}_enc")) if getattr(row, f"{name}_enc") else ""
                 for name in SECRET_FIELDS}
        return cls(cache_id=f"{row.id}:{row.version}", environment=row.environment, shortcode=row.shortcode,
                   **plain)
