"""Credential encryption: the first key encrypts, every key decrypts, rotate moves tokens to the first key."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet

from payhook_shared.daraja.crypto import Cipher, generate_key
from payhook_shared.daraja.errors import CredentialsError

OLD, NEW = generate_key(), generate_key()


def test_ciphertext_is_not_the_secret_and_decrypts_back():
    token = Cipher([OLD]).encrypt("consumer-secret")
    assert "consumer-secret" not in token
    assert Cipher([OLD]).decrypt(token) == "consumer-secret"


def test_every_key_decrypts_and_rotate_moves_to_the_first():
    old_token = Cipher([OLD]).encrypt("passkey")
    both = Cipher([NEW, OLD])
    assert both.decrypt(old_token) == "passkey"
    rotated = both.rotate(old_token)
    assert Fernet(NEW.encode()).decrypt(rotated.encode()) == b"passkey"
    assert Cipher([NEW]).decrypt(rotated) == "passkey"


def test_a_token_no_key_decrypts_is_refused_without_its_content():
    token = Cipher([OLD]).encrypt("passkey")
    for call in (Cipher([NEW]).decrypt, Cipher([NEW]).rotate):
        with pytest.raises(CredentialsError, match="cannot be decrypted") as refused:
            call(token)
        assert "passkey" not in str(refused.value)


@pytest.mark.parametrize("keys", [[], ["not-a-key"], ["é" * 44]])
def test_missing_or_malformed_keys_are_refused_by_name(keys):
    with pytest.raises(CredentialsError, match="CREDENTIALS_KEYS"):
        Cipher(keys)


def test_without_keys_or_key_file_nothing_can_be_stored():
    with pytest.raises(CredentialsError, match="set CREDENTIALS_KEYS"):
        Cipher.configured((), "")


def test_without_keys_development_keeps_one_in_an_owner_only_file(tmp_path):
    key_file = tmp_path / "var" / "credentials.key"
    first = Cipher.configured((), str(key_file))
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    assert Cipher.configured((), str(key_file)).decrypt(first.encrypt("secret")) == "secret"
    # Configured keys win over the file.
    with pytest.raises(CredentialsError):
        Cipher.configured((NEW,), str(key_file)).decrypt(first.encrypt("secret"))
