"""Rows the tests need, created through the store like the services do."""

from __future__ import annotations

import json
from pathlib import Path

from payhook_shared import ids, signing
from payhook_shared.callbacks.mpesa import normalise_stk
from payhook_shared.store import Endpoint, Merchant, Store

FIXTURES = Path(__file__).parent / "fixtures"


def fixture_bytes(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def fixture_json(name: str) -> dict:
    return json.loads(fixture_bytes(name))


def merchant_with_endpoints(store: Store, *urls: str, email: str | None = "merchant@example.test",
                            event_types: list[str] | None = None) -> tuple[Merchant, list[Endpoint]]:
    """A merchant with one endpoint per URL."""
    with store.write() as session:
        merchant = Merchant(id=ids.new_id("mch"), name="Test Shop", notification_email=email,
                            callback_token=ids.new_token(), settings={})
        session.add(merchant)
        endpoints = [Endpoint(id=ids.new_id("ep"), merchant_id=merchant.id, url=url,
                              secret=signing.generate_secret(), event_types=event_types) for url in urls]
        session.add_all(endpoints)
    return merchant, endpoints


def stk_url(merchant: Merchant) -> str:
    return f"/cb/{merchant.id}/{merchant.callback_token}/stk"


def load_merchant(store: Store, merchant_id: str):
    """The merchant's profile (with its endpoints), as the ingest path takes it."""
    from payhook_webhook import merchants

    return merchants.load(store, merchant_id)


def callback_url(merchant: Merchant, kind: str) -> str:
    """The merchant's callback path for ``kind`` (``stk``, ``c2b-confirmation``, ``b2c-result``, …)."""
    return f"/cb/{merchant.id}/{merchant.callback_token}/{kind}"


def set_merchant_settings(store: Store, merchant: Merchant, settings: dict) -> None:
    with store.write() as session:
        session.get(Merchant, merchant.id).settings = settings


def api_key(store: Store, merchant_id: str | None = None) -> dict[str, str]:
    """Headers carrying a new API key: an admin key, or ``merchant_id``'s."""
    from payhook_webhook.auth import create_api_key

    _, key = create_api_key(store, merchant_id, label="test")
    return {"Authorization": f"Bearer {key}"}


def record_payment(store: Store, broker, merchant_id: str, fixture: str, customer_email: str | None = None) -> str:
    """Record an STK payment through the webhook-service's ingest, as a callback would; its event id.

    ``customer_email`` stands in for gateways whose callbacks name the buyer.
    """
    from payhook_webhook import ingest
    from payhook_webhook.priority_rules import classify

    payload = fixture_json(fixture)
    event = normalise_stk(payload)
    event.customer_email = customer_email
    return ingest.record(store, broker, load_merchant(store, merchant_id), event, json.dumps(payload).encode(),
                         classify(event)).event_id


def make_source(store: Store, merchant: Merchant, provider: str, secret: str, **fields):
    """An inbound gateway source for ``merchant``, and its callback path."""
    from payhook_shared.store import Source

    with store.write() as session:
        source = Source(id=ids.new_id("src"), merchant_id=merchant.id, provider=provider,
                        callback_token=ids.new_token(), secret=secret, config=fields.pop("config", {}), **fields)
        session.add(source)
    return source, f"/in/{source.id}/{source.callback_token}"
