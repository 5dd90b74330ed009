"""``flask credentials rotate``: every stored Daraja secret re-encrypted with the first key; the old key can go."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy import select

from factories import api_key, merchant_with_endpoints
from payhook_shared.store import DarajaCredential
from support_daraja import CONSUMER_KEY, CONSUMER_SECRET, PASSKEY, SHORTCODE

OLD, NEW = Fernet.generate_key().decode(), Fernet.generate_key().decode()
CREDENTIALS = {"environment": "sandbox", "shortcode": SHORTCODE, "consumer_key": CONSUMER_KEY,
               "consumer_secret": CONSUMER_SECRET, "passkey": PASSKEY}


def make_app(database_url, redis_url, keys):
    from payhook_webhook.app import create_app

    app = create_app({"database_url": database_url, "redis_url": redis_url, "log_format": "text",
                      "credentials_keys": keys, "credentials_key_file": ""})
    app.config["TESTING"] = True
    return app


def stored(app) -> list[DarajaCredential]:
    with app.extensions["payhook.store"].read() as session:
        return session.scalars(select(DarajaCredential).order_by(DarajaCredential.id)).all()


def test_rotate_reencrypts_with_the_first_key_so_the_old_one_can_go(database_url, redis_url):
    before = make_app(database_url, redis_url, (OLD,))
    store = before.extensions["payhook.store"]
    for _ in range(2):
        merchant, _ = merchant_with_endpoints(store)
        answer = before.test_client().put(f"/v1/merchants/{merchant.id}/daraja-credentials", json=CREDENTIALS,
                                          headers=api_key(store, merchant.id))
        assert answer.status_code == 200
    old_rows = stored(before)
    before.extensions["payhook.store"].dispose()

    both = make_app(database_url, redis_url, (NEW, OLD))
    result = both.test_cli_runner().invoke(args=["credentials", "rotate"])
    assert result.exit_code == 0, result.output
    assert "2 merchant(s)" in result.output
    rows = stored(both)
    both.extensions["payhook.store"].dispose()
    new, old = Fernet(NEW.encode()), Fernet(OLD.encode())
    for row, was in zip(rows, old_rows):
        for name in ("consumer_key", "consumer_secret", "passkey"):
            token = getattr(row, f"{name}_enc")
            assert token != getattr(was, f"{name}_enc")
            assert new.decrypt(token.encode()).decode() == CREDENTIALS[name]
            with pytest.raises(InvalidToken):
                old.decrypt(token.encode())
        assert row.initiator_name_enc is None and row.security_credential_enc is None

    # The old key dropped: the credentials still decrypt, and a push reaches the point of calling Daraja.
    after = make_app(database_url, redis_url, (NEW,))
    with after.app_context():
        from payhook_webhook.services import daraja

        with after.extensions["payhook.store"].read() as session:
            creds = daraja.merchant_credentials(session, rows[0].merchant_id)
    after.extensions["payhook.store"].dispose()
    assert (creds.consumer_secret, creds.passkey) == (CONSUMER_SECRET, PASSKEY)
    assert CONSUMER_SECRET not in result.output


def test_rotate_without_the_old_key_fails_and_changes_nothing(database_url, redis_url):
    before = make_app(database_url, redis_url, (OLD,))
    store = before.extensions["payhook.store"]
    merchant, _ = merchant_with_endpoints(store)
    before.test_client().put(f"/v1/merchants/{merchant.id}/daraja-credentials", json=CREDENTIALS,
                             headers=api_key(store, merchant.id))
    old_rows = stored(before)
    store.dispose()
    wrong = make_app(database_url, redis_url, (NEW,))
    result = wrong.test_cli_runner().invoke(args=["credentials", "rotate"])
    assert result.exit_code == 1 and "cannot be decrypted" in result.output
    assert [r.consumer_secret_enc for r in stored(wrong)] == [r.consumer_secret_enc for r in old_rows]
    wrong.extensions["payhook.store"].dispose()


def test_a_key_that_is_not_a_fernet_key_is_refused_by_name(database_url, redis_url):
    app = make_app(database_url, redis_url, ("not-a-key",))
    result = app.test_cli_runner().invoke(args=["credentials", "rotate"])
    app.extensions["payhook.store"].dispose()
    assert result.exit_code == 1 and "CREDENTIALS_KEYS" in result.output


def test_generate_key_prints_a_usable_key(database_url, redis_url):
    app = make_app(database_url, redis_url, (OLD,))
    key = app.test_cli_runner().invoke(args=["credentials", "generate-key"]).output.strip()
    app.extensions["payhook.store"].dispose()
    assert Fernet(key.encode()).decrypt(Fernet(key.encode()).encrypt(b"x")) == b"x"

