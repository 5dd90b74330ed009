"""``flask --app payhook_webhook.app`` commands: migrate, seed a demo merchant, create, list and revoke API keys,
reprocess quarantined callbacks, rotate the key of the Daraja credentials."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click
from flask import Flask, current_app
from sqlalchemy import select

from payhook_shared import ids, signing
from payhook_shared.daraja import crypto
from payhook_shared.daraja.errors import CredentialsError
from payhook_shared.store import ApiKey, DarajaCredential, Endpoint, Merchant

from . import auth, quarantine
from .errors import NotFound
from .services import daraja
from .services.keys import revoke
from .services.merchants import callback_urls

#: Who the audit log names for changes made at the command line (whoever can run it holds the database).
CLI = auth.Principal(key_id="cli", merchant_id=None)


def _with_receipt_fallback(settings: dict, customer_email: str) -> dict:
    """``settings`` with ``notifications.receipt.fallback_email`` set, everything else kept."""
    notifications = dict(settings.get("notifications") or {})
    notifications["receipt"] = {**(notifications.get("receipt") or {}), "fallback_email": customer_email}
    return {**settings, "notifications": notifications}


# What payhook-daraja-sandbox accepts by default (docs/sandbox.md): its app, and Safaricom's public
# sandbox till with its published passkey; an initiator for Transaction Status, which the sandbox does not
# check. Test values, not secrets.
SANDBOX_CREDENTIALS = {"consumer_key": "payhook-sandbox-key", "consumer_secret": "payhook-sandbox-secret",
                       "passkey": "bfb279f9aa9bdbcf158e97dd71a467cd2e0c893059b10f78e6b72ada1ed2c919",
                       "initiator_name": "testapi", "security_credential": "payhook-sandbox-credential"}
SANDBOX_SHORTCODE = "174379"


def _sandbox_credentials(merchant_id: str) -> DarajaCredential:
    """The demo merchant's Daraja credentials for the local sandbox, encrypted as any merchant's are."""
    box = daraja.cipher()
    return DarajaCredential(id=ids.new_id("dcr"), merchant_id=merchant_id, environment="sandbox",
                            shortcode=SANDBOX_SHORTCODE, version=1,
                            **{f"{name}_enc": box.encrypt(value) for name, value in SANDBOX_CREDENTIALS.items()})


def _demo_admin_key(store, previous: Path) -> str:
    """The demo's admin key: the one already in ``previous`` if it still works, else a new one.

    Keys are stored hashed, so the demo file is the only place this one can be read again.
    """
    if previous.exists():
        key = json.loads(previous.read_text()).get("admin_api_key")
        if key:
            with store.read() as session:
                if session.scalar(select(ApiKey.id).where(ApiKey.key_hash == auth.hash_key(key),
                                                          ApiKey.revoked_at.is_(None))):
                    return key
    return auth.create_api_key(store, None, label="demo admin (make run)")[1]


def _when(value) -> str:
    return value.strftime("%Y-%m-%dT%H:%MZ") if value else "-"


def register(app: Flask) -> None:
    """Attach the CLI commands to ``app``."""

    @app.cli.command("migrate")
    def migrate() -> None:
        """Upgrade the store to the newest schema."""
        # Imported here: Alembic is 12 MB that the serving processes, which never migrate, do without.
        from payhook_shared.store.migrate import upgrade

        upgrade(current_app.extensions["payhook.settings"].database_url)
        click.echo("store migrated")

    @app.cli.command("create-api-key")
    @click.option("--merchant", "merchant_id", default=None, help="Merchant id; without it, an admin key.")
    @click.option("--label", default="", help="What the key is for, to recognise it later.")
    def create_api_key(merchant_id: str | None, label: str) -> None:
        """Create an API key and print it; it is stored hashed and cannot be shown again."""
        try:
            row, key = auth.create_api_key(current_app.extensions["payhook.store"], merchant_id, label)
        except LookupError as exc:
            raise click.BadParameter(str(exc), param_hint="--merchant") from None
        kind = f"merchant {merchant_id}" if merchant_id else "admin"
        click.echo(f"created {kind} API key {row.id}; store it now, it is not shown again:", err=True)
        click.echo(key)

    @app.cli.command("list-api-keys")
    @click.option("--merchant", "merchant_id", default=None, help="Only this merchant's keys.")
    def list_api_keys(merchant_id: str | None) -> None:
        """List API keys by id: merchant, label, last four characters, created, last used, revoked."""
        with current_app.extensions["payhook.store"].read() as session:
            rows = auth.list_api_keys(session, merchant_id)
        click.echo("id\tmerchant\tlabel\tlast4\tcreated\tlast used\trevoked")
        for row in rows:
            click.echo("\t".join([row.id, row.merchant_id or "admin", row.label, row.hint or "-",
                                  *(_when(t) for t in (row.created_at, row.last_used_at, row.revoked_at))]))

    @app.cli.command("revoke-api-key")
    @click.argument("key_id")
    def revoke_api_key(key_id: str) -> None:
        """Revoke an API key at once and end the console sessions it opened."""
        with current_app.extensions["payhook.store"].write() as session:
            try:
                _, newly = revoke(session, CLI, key_id)
            except NotFound as exc:
                raise click.BadParameter(exc.message, param_hint="KEY_ID") from None
        click.echo(f"revoked API key {key_id}" if newly else f"API key {key_id} was revoked already")

    @app.cli.group("quarantine")
    def quarantine_group() -> None:
        """Callbacks on a valid URL that failed validation, kept to be reprocessed."""

    @quarantine_group.command("reprocess")
    @click.argument("quarantine_id", required=False)
    @click.option("--all", "every", is_flag=True, help="Every callback still quarantined, oldest first.")
    @click.option("--merchant", "merchant_id", default=None, help="With --all: only this merchant's.")
    def reprocess(quarantine_id: str | None, every: bool, merchant_id: str | None) -> None:
        """Validate and record quarantined callbacks again, as live ones; exits 1 if any is still invalid."""
        if every == (quarantine_id is not None):
            raise click.UsageError("give one quarantined callback's id, or --all")
        if every:
            with current_app.extensions["payhook.store"].read() as session:
                todo = quarantine.open_ids(session, merchant_id)
        else:
            todo = [quarantine_id]
        still_invalid = 0
        for row_id in todo:
            try:
                outcome = quarantine.reprocess(row_id)
            except NotFound as exc:
                raise click.BadParameter(exc.message, param_hint="QUARANTINE_ID") from None
            if outcome.state == quarantine.RESOLVED:
                click.echo(f"{row_id} resolved: {outcome.event_id}{' (already recorded)' if outcome.duplicate else ''}")
            else:
                still_invalid += 1
                click.echo(f"{row_id} still invalid: {outcome.error}")
        click.echo(f"{len(todo) - still_invalid} resolved, {still_invalid} still quarantined", err=True)
        if still_invalid:
            raise SystemExit(1)

    @app.cli.group("credentials")
    def credentials_group() -> None:
        """Merchants' Daraja credentials, encrypted with the keys in CREDENTIALS_KEYS."""

    @credentials_group.command("rotate")
    def rotate_credentials() -> None:
        """Re-encrypt every stored Daraja credential with the first key of CREDENTIALS_KEYS.

        Put the new key first and keep the old ones after it; once this has run, the old keys can go.
        """
        try:
            rotated = daraja.rotate_credentials(current_app.extensions["payhook.store"], daraja.cipher())
        except CredentialsError as exc:
            raise click.ClickException(str(exc)) from None
        click.echo(f"re-encrypted the Daraja credentials of {rotated} merchant(s) with the first key")

    @credentials_group.command("generate-key")
    def generate_key() -> None:
        """Print a new random key to put first in CREDENTIALS_KEYS."""
        click.echo(crypto.generate_key())

    @app.cli.command("seed-demo")
    @click.option("--receiver-url", required=True, help="Endpoint URL of the demo merchant receiver.")
    @click.option("--email", default="merchant@demo.payhook.test", show_default=True)
    @click.option("--customer-email", default="customer@demo.payhook.test", show_default=True,
                  help="Where the demo sends buyer receipts for payments that carry no customer email.")
    @click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=Path("var/demo.json"),
                  show_default=True, help="Where to write the demo merchant's ids and secrets.")
    @click.option("--daraja-sandbox", is_flag=True,
                  help="Give the demo merchant (once) Daraja sandbox credentials: those payhook-daraja-sandbox "
                       "accepts by default (docs/sandbox.md), called at DARAJA_SANDBOX_URL.")
    def seed_demo(receiver_url: str, email: str, customer_email: str, out: Path, daraja_sandbox: bool) -> None:
        """Create (once) a demo merchant whose endpoint is the demo receiver; print its callback URL."""
        settings = current_app.extensions["payhook.settings"]
        store = current_app.extensions["payhook.store"]
        with store.write() as session:
            merchant = session.execute(
                select(Merchant).where(Merchant.name == "Demo Shop")
            ).scalar_one_or_none()
            if merchant is None:
                merchant = Merchant(id=ids.new_id("mch"), name="Demo Shop", notification_email=email,
                                    callback_token=ids.new_token(), settings={})
                session.add(merchant)
            # Daraja's STK callback names no buyer email, so the demo sends its receipts to a stand-in buyer.
            merchant.settings = _with_receipt_fallback(merchant.settings or {}, customer_email)
            endpoint = session.execute(
                select(Endpoint).where(Endpoint.merchant_id == merchant.id, Endpoint.url == receiver_url)
            ).scalar_one_or_none()
            if endpoint is None:
                endpoint = Endpoint(id=ids.new_id("ep"), merchant_id=merchant.id, url=receiver_url,
                                    description="demo merchant receiver", secret=signing.generate_secret())
                session.add(endpoint)
            if daraja_sandbox and daraja.stored_credentials(session, merchant.id) is None:
                session.flush()
                session.add(_sandbox_credentials(merchant.id))
            demo = {
                "base_url": settings.public_base_url,
                "merchant_id": merchant.id,
                "endpoint_id": endpoint.id,
                "endpoint_secret": endpoint.secret,
                "callback_urls": callback_urls(settings.public_base_url, merchant),
            }
        demo["admin_api_key"] = _demo_admin_key(store, out)
        out.parent.mkdir(parents=True, exist_ok=True)
        # It holds the admin API key and the endpoint's signing secret: owner-only, even if it existed before.
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as file:
            file.write(json.dumps(demo, indent=2))
        click.echo(json.dumps(demo["callback_urls"]))
