"""The webhook-service served over real HTTP with the Daraja sandbox as Daraja: what the reconciliation tests
(STK intents, QueueTimeOut status checks) run against. ``stack(**settings)`` starts one; the sandbox's
callbacks reach the service, and the service's Daraja calls reach the sandbox."""

from __future__ import annotations

from typing import Any

import pytest
from cryptography.fernet import Fernet
from prometheus_client import REGISTRY
from sqlalchemy import select
from werkzeug.serving import make_server

from factories import api_key, merchant_with_endpoints
from payhook_shared.store import Event, PaymentIntent
from support import free_port, serving, wait_until

KEY = Fernet.generate_key().decode()
FAST = {"reconcile_after": 0.3, "reconcile_interval": 0.1, "reconcile_backoff": 0.05, "reconcile_backoff_max": 0.2}
INITIATOR = {"initiator_name": "testapi", "security_credential": "c2VjdXJpdHkgY3JlZGVudGlhbA=="}


class Stack:
    """The webhook-service served over real HTTP (the sandbox's callbacks must reach it), with the sandbox as Daraja."""

    def __init__(self, database_url, redis_url, sandbox, **overrides):
        from payhook_webhook.app import create_app

        self.sandbox = sandbox
        self.port = free_port()
        self.settings = {"database_url": database_url, "redis_url": redis_url, "log_format": "text",
                         "public_base_url": f"http://127.0.0.1:{self.port}", "daraja_sandbox_url": sandbox.url,
                         "credentials_keys": (KEY,), "credentials_key_file": "", "daraja_read_timeout": 2.0,
                         "daraja_connect_timeout": 1.0, **FAST, **overrides}
        self.app = create_app(self.settings)
        self.app.config["TESTING"] = True
        self.store = self.app.extensions["payhook.store"]
        self.http = self.app.test_client()
        self._server = make_server("127.0.0.1", self.port, self.app, threaded=True)
        self._thread = serving(self._server)
        self._thread.start()

    def another_process(self, **overrides):
        """A second webhook-service app on the same store and Redis (a replica), not served."""
        from payhook_webhook.app import create_app

        app = create_app({**self.settings, **overrides})
        app.config["TESTING"] = True
        return app

    def merchant(self, event_types=None, **credentials: Any):
        """A merchant with an endpoint (nothing listens there) and the sandbox's credentials; ``credentials`` add to them."""
        merchant, endpoints = merchant_with_endpoints(self.store, "http://127.0.0.1:9/hooks", event_types=event_types)
        headers = api_key(self.store, merchant.id)
        answer = self.http.put(f"/v1/merchants/{merchant.id}/daraja-credentials", headers=headers, json={
            "environment": "sandbox", "shortcode": self.sandbox.shortcode, "consumer_key": self.sandbox.consumer_key,
            "consumer_secret": self.sandbox.consumer_secret, "passkey": self.sandbox.passkey, **credentials})
        assert answer.status_code == 200, answer.get_json()
        return merchant, headers

    def callback_urls(self, merchant, headers) -> dict[str, str]:
        answer = self.http.get(f"/v1/merchants/{merchant.id}/callback-urls", headers=headers)
        assert answer.status_code == 200, answer.get_json()
        return answer.get_json()["callback_urls"]

    def push(self, headers, key, reference="INV-1", amount=10):
        answer = self.http.post("/v1/mpesa/stk-push", headers=headers, json={
            "amount": amount, "phone": "0708374149", "account_reference": reference, "description": "Order",
            "idempotency_key": key})
        assert answer.status_code == 201, answer.get_json()
        return answer.get_json()["checkout_request_id"]

    def intent(self, checkout_id) -> PaymentIntent:
        with self.store.read() as session:
            return session.scalars(select(PaymentIntent).where(PaymentIntent.checkout_request_id == checkout_id)).one()

    def stk_events(self, checkout_id) -> list[Event]:
        with self.store.read() as session:
            return session.scalars(select(Event).where(Event.type == "mpesa.stk_push",
                                                       Event.reference == checkout_id)).all()

    def final(self, *checkout_ids):
        wait_until(lambda: all(p["final"] for p in self.sandbox.pushes() if p["CheckoutRequestID"] in checkout_ids),
                   what="the sandbox's pushes final")

    def close(self):
        self._server.shutdown()
        self._thread.join(10)
        self.store.dispose()


@pytest.fixture
def stack(database_url, redis_url, daraja_sandbox):
    """Start stacks: ``stack(sandbox_settings=None, **settings) -> Stack``, each closed after the test."""
    made = []

    def start(sandbox_settings=None, **overrides):
        sandbox = daraja_sandbox(**{"callback_delay": 0.1, **(sandbox_settings or {})})
        made.append(Stack(database_url, redis_url, sandbox, **overrides))
        return made[-1]

    yield start
    for one in made:
        one.close()


def counted(name, labels=None):
    """A Prometheus sample of this process (0 when never counted)."""
    return REGISTRY.get_sample_value(name, labels or {}) or 0.0
