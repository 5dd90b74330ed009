"""Encryption at rest of the merchants' Daraja secrets: Fernet keys, the first encrypts, all decrypt.

``CREDENTIALS_KEYS`` lists the keys (comma-separated, each ``Fernet.generate_key()``). To rotate, put a
new key first, keep the old ones after it, run ``flask credentials rotate`` (every secret re-encrypted
with the new key), then drop the old keys. In development, with no keys configured, one key is made
and kept owner-only in a file (``CREDENTIALS_KEY_FILE``, ``var/credentials.key``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from .errors import CredentialsError


def generate_key() -> str:
    """A new random Fernet key, as text to put in ``CREDENTIALS_KEYS``."""
    return Fernet.generate_key().decode("ascii")


def _key_from_file(path: Path) -> str:
    """The key kept in ``path``, made (owner-only, 0600) on first use."""
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    key = generate_key()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        # Another process made it first: use its key, so both encrypt alike.
        return path.read_text().strip()
    with os.fdopen(fd, "w") as out:
        out.write(key + "\n")
    return key


class Cipher:
    """Encrypts with the first key, decrypts with any of them (``MultiFernet``)."""

    def __init__(self, keys: Sequence[str]):
        if not keys:
            raise CredentialsError("no credentials encryption key: set CREDENTIALS_KEYS")
        try:
            self._fernet = MultiFernet([Fernet(key.encode("ascii")) for key in keys])
        except (ValueError, UnicodeEncodeError):
            raise CredentialsError("CREDENTIALS_KEYS: each key must be 32 url-safe base64-encoded bytes "
                                   "(Fernet.generate_key())") from None

    @classmethod
    def configured(cls, keys: Sequence[str], key_file: str) -> "Cipher":
        """The cipher of ``keys``; without keys, of the development key in ``key_file`` (none if that is empty).

        Raises:
          CredentialsError: for no key at all, or a key that is not a Fernet key.
        """
        if keys:
            return cls(keys)
        if not key_file:
            raise CredentialsError("no credentials encryption key: set CREDENTIALS_KEYS")
        return cls([_key_from_file(Path(key_file))])

    def encrypt(self, plain: str) -> str:
        """``plain`` encrypted with the first key, as ASCII text (a Fernet token)."""
        return self._fernet.encrypt(plain.encode("utf-8")).decode("ascii")

    def decrypt(self, token: str) -> str:
        """The text ``token`` encrypts.

        Raises:
          CredentialsError: when no configured key decrypts it (a key removed before ``rotate``).
        """
        try:
            return self._fernet.decrypt(token.encode("ascii")).decode("utf-8")
        except (InvalidToken, UnicodeError):
            raise CredentialsError("stored credentials cannot be decrypted with any key in CREDENTIALS_KEYS") from None

    def rotate(self, token: str) -> str:
        """``token`` re-encrypted with the first key (decrypted with whichever key made it).

        Raises:
          CredentialsError: as ``decrypt``.
        """
        try:
            return self._fernet.rotate(token.encode("ascii")).decode("ascii")
        except (InvalidToken, UnicodeError):
            raise CredentialsError("stored credentials cannot be decrypted with any key in CREDENTIALS_KEYS") from None
