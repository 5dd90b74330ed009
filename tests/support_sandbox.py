"""The Daraja sandbox (``payhook-daraja-sandbox``) as a real test peer: a subprocess on a free port, and a
small client for its Daraja endpoints and its control API (docs/sandbox.md).

``daraja_sandbox(**settings)`` starts one; tests that need Safaricom use it as the provider.
"""

from __future__ import annotations

import base64
import datetime as dt
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import redis
import requests

from payhook_sandbox.settings import load
from support import free_port, wait_until

BIN = Path(sys.executable).parent
EAT = dt.timezone(dt.timedelta(hours=3))


class DarajaSandbox:
    """A ``payhook-daraja-sandbox`` process and a client for it.

    ``settings`` are the sandbox's settings by field name (``callback_delay=0.2``, ``seed=7``), passed as
    its command-line flags.
    """

    def __init__(self, log: Path, **settings: Any):
        # The credentials the process will accept: its defaults, or those the test chose.
        chosen = load({}, **settings)
        self.consumer_key, self.consumer_secret = chosen.consumer_key, chosen.consumer_secret
        self.shortcode, self.passkey = chosen.shortcode, chosen.passkey
        self.port = free_port()
        self.log = log
        self.settings = settings
        self.process: subprocess.Popen | None = None
        self._token: str | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> DarajaSandbox:
        """Start the process (again, on the same port, after ``stop``) and wait until it answers."""
        flags = [f"--{name.replace('_', '-')}={value}" for name, value in self.settings.items()]
        with self.log.open("ab") as log:
            self.process = subprocess.Popen([str(BIN / "payhook-daraja-sandbox"), "--port", str(self.port), *flags],
                                            stdout=log, stderr=subprocess.STDOUT,
                                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
        wait_until(self._up, timeout=20, what=f"the Daraja sandbox on port {self.port} (log: {self.log})")
        return self

    def _up(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"the Daraja sandbox exited: {self.log.read_text()[-2000:]}")
        try:
            return requests.get(f"{self.url}/health", timeout=2).status_code == 200
        except requests.ConnectionError:
            return False

    def stop(self) -> None:
        """Stop the process: the sandbox is down until ``start``."""
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)

    # -- Daraja, as a client would call it ----------------------------------------------------------

    def token(self) -> str:
        """A fresh access token for the default app."""
        response = requests.get(f"{self.url}/oauth/v1/generate", params={"grant_type": "client_credentials"},
                                auth=(self.consumer_key, self.consumer_secret), timeout=10)
        assert response.status_code == 200, response.text
        return response.json()["access_token"]

    def password(self, timestamp: str, shortcode: str | None = None, passkey: str | None = None) -> str:
        """Daraja's Password: base64(shortcode + passkey + timestamp)."""
        raw = f"{shortcode or self.shortcode}{passkey or self.passkey}{timestamp}"
        return base64.b64encode(raw.encode()).decode()

    def call(self, path: str, body: dict[str, Any], token: str | None = None) -> requests.Response:
        """POST ``body`` to a Daraja endpoint with a Bearer token (one fetched once per sandbox by default)."""
        if token is None:
            self._token = self._token or self.token()
            token = self._token
        return requests.post(f"{self.url}{path}", json=body, headers={"Authorization": f"Bearer {token}"}, timeout=30)

    def stk_body(self, callback_url: str, **fields: Any) -> dict[str, Any]:
        """A valid STK Push request to ``callback_url``; ``fields`` replace any of its fields."""
        timestamp = dt.datetime.now(EAT).strftime("%Y%m%d%H%M%S")
        return {"BusinessShortCode": int(self.shortcode), "Password": self.password(timestamp),
                "Timestamp": timestamp, "TransactionType": "CustomerPayBillOnline", "Amount": 1,
                "PartyA": 254708374149, "PartyB": int(self.shortcode), "PhoneNumber": 254708374149,
                "CallBackURL": callback_url, "AccountReference": "INV-1001", "TransactionDesc": "Payment", **fields}

    def stk_push(self, callback_url: str, **fields: Any) -> dict[str, Any]:
        """Send an STK Push that must be accepted; Daraja's answer."""
        response = self.call("/mpesa/stkpush/v1/processrequest", self.stk_body(callback_url, **fields))
        assert response.status_code == 200, response.text
        return response.json()

    def stk_query(self, checkout_id: str) -> requests.Response:
        """Query an STK Push by its CheckoutRequestID."""
        timestamp = dt.datetime.now(EAT).strftime("%Y%m%d%H%M%S")
        return self.call("/mpesa/stkpushquery/v1/query", {
            "BusinessShortCode": self.shortcode, "Password": self.password(timestamp), "Timestamp": timestamp,
            "CheckoutRequestID": checkout_id})

    # -- the control API ------------------------------------------------------------------------------

    def control(self, method: str, path: str, body: Any = None, expect: int = 200) -> Any:
        """Call ``/_sandbox/<path>``; its JSON (None for an empty answer)."""
        response = requests.request(method, f"{self.url}/_sandbox/{path}", json=body, timeout=30)
        assert response.status_code == expect, f"{method} {path}: {response.status_code} {response.text}"
        return response.json() if response.content else None

    def configure(self, **config: Any) -> dict[str, Any]:
        """Change the outcome mix and timings (``PUT /_sandbox/config``)."""
        return self.control("PUT", "config", config)

    def fault(self, status: int, count: int = 1, endpoint: str | None = None) -> None:
        """Fail the next ``count`` requests to ``endpoint`` (any when None) with ``status``."""
        self.control("POST", "faults", {"status": status, "count": count, "endpoint": endpoint}, expect=201)

    def counters(self) -> dict[str, Any]:
        return self.control("GET", "counters")

    def pushes(self) -> list[dict[str, Any]]:
        return self.control("GET", "stk")

    def callbacks(self) -> list[dict[str, Any]]:
        return self.control("GET", "callbacks")

    def send_callback(self, checkout_id: str) -> dict[str, Any]:
        """Send an STK Push's callback now (a dropped push's late callback)."""
        return self.control("POST", f"stk/{checkout_id}/callback")


def query_in_process(url: str, redis_url: str, credentials: dict[str, str], checkout_id: str, go, out) -> None:
    """In a process of its own, with Payhook's Daraja client of its own: for each phase read from ``go`` (until
    ``None``), ask the sandbox about ``checkout_id`` (STK Push Query) and put ``(phase, outcome)`` in ``out``:
    ``ok``, or the error's class (``DarajaAuthError`` for a token the sandbox refused)."""
    from payhook_shared.daraja.client import DarajaClient
    from payhook_shared.daraja.credentials import DarajaCredentials

    client = DarajaClient({"sandbox": url}, redis.Redis.from_url(redis_url))
    creds = DarajaCredentials(**credentials)
    while (phase := go.get()) is not None:
        try:
            client.stk_query(creds, checkout_id)
            out.put((phase, "ok"))
        except Exception as exc:  # reported to the test, which names it
            out.put((phase, type(exc).__name__))


@pytest.fixture
def daraja_sandbox(tmp_path):
    """Start Daraja sandboxes: ``daraja_sandbox(**settings) -> DarajaSandbox``, each stopped after the test."""
    started: list[DarajaSandbox] = []

    def start(**settings: Any) -> DarajaSandbox:
        sandbox = DarajaSandbox(tmp_path / f"sandbox-{len(started)}.log", **settings)
        started.append(sandbox)
        return sandbox.start()

    yield start
    for sandbox in started:
        sandbox.stop()
