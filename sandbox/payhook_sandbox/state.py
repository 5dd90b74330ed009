"""The sandbox's memory: credentials and tokens, transactions, the outcome mix, faults and counters.

Everything the routes and the control API share lives in one ``Sandbox``, behind one lock; callbacks
are sent by its dispatcher's threads, never on a request's thread.
"""

from __future__ import annotations

import base64
import collections
import contextlib
import dataclasses
import datetime as dt
import logging
import random
import secrets
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import requests
from payhook_cli import daraja

from .dispatch import Dispatcher
from .scenarios import Mix, Scenario, decide
from .settings import Settings

log = logging.getLogger("payhook_sandbox")
EAT = daraja.EAT
#: Callbacks kept for ``GET /_sandbox/callbacks``; the counters count them all.
CALLBACK_LOG = 1000


@dataclasses.dataclass
class Fault:
    """The next ``remaining`` answers of ``endpoint`` (any Daraja endpoint when None) are ``status``."""

    status: int
    remaining: int
    endpoint: str | None


@dataclasses.dataclass
class Push:
    """One accepted STK Push: what it will say, and what became of its callback."""

    checkout_request_id: str
    merchant_request_id: str
    shortcode: str
    callback_url: str
    amount: Decimal
    phone: str
    receipt: str
    scenario: Scenario
    final_at: float
    callback: str
    """``scheduled``, ``dropped``, ``sent`` or ``failed``."""
    body: dict[str, Any]

    def public(self, now: float) -> dict[str, Any]:
        """What the control API shows of it."""
        return {"CheckoutRequestID": self.checkout_request_id, "MerchantRequestID": self.merchant_request_id,
                "ResultCode": self.scenario.result_code, "fate": self.scenario.fate, "final": now >= self.final_at,
                "callback": self.callback, "MpesaReceiptNumber": self.receipt if self.scenario.result_code == "0"
                else None, "amount": str(self.amount)}


@dataclasses.dataclass(frozen=True)
class Payment:
    """One B2C payment: what a Transaction Status query about it finds, whatever became of its callback."""

    originator_conversation_id: str
    conversation_id: str
    receipt: str
    result_code: str
    amount: Decimal
    phone: str
    shortcode: str


class Sandbox:
    """The state of one sandbox process."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._lock = threading.Lock()
        self.dispatcher = Dispatcher()
        self.reset()

    # -- configuration --------------------------------------------------------------------------

    def reset(self) -> None:
        """Back to the settings: the first credentials only, no tokens, transactions, faults or counts."""
        s = self.settings
        with self._lock:
            self.dispatcher.clear()
            self.apps = {s.consumer_key: s.consumer_secret}
            self.passkeys = {s.shortcode: s.passkey}
            self.tokens: dict[str, float] = {}
            self.token_expires_in = s.token_expires_in
            self.query_latency = s.query_latency
            self.mix = Mix(drop_ratio=s.drop_ratio, late_ratio=s.late_ratio, callback_delay=s.callback_delay,
                           late_delay=s.late_delay)
            self.rng = random.Random(s.seed)
            self.pushes: dict[str, Push] = {}
            self.c2b_urls: dict[str, dict[str, str]] = {}
            self.receipts: dict[str, dict[str, Any]] = {}
            self.payments: dict[str, Payment] = {}
            self.faults: list[Fault] = []
            self.counts = {"tokens_issued": 0, "requests": collections.Counter(), "faults_served": 0,
                           "queries": collections.Counter(), "max_concurrent_queries": {},
                           "status_queries": collections.Counter(), "callbacks": collections.Counter()}
            self.in_flight: collections.Counter = collections.Counter()
            self.callback_log: collections.deque = collections.deque(maxlen=CALLBACK_LOG)

    def configure(self, *, mix: Mix | None = None, query_latency: float | None = None,
                  token_expires_in: int | None = None, seed: int | None = None) -> None:
        """Change the outcome mix, the query latency, the tokens' lifetime or the seed (None keeps each)."""
        with self._lock:
            if mix is not None:
                self.mix = mix
            if query_latency is not None:
                self.query_latency = query_latency
            if token_expires_in is not None:
                self.token_expires_in = token_expires_in
            if seed is not None:
                self.rng = random.Random(seed)

    def add_credentials(self, consumer_key: str | None, consumer_secret: str | None,
                        shortcode: str | None, passkey: str | None) -> None:
        """Accept one more Daraja app (key and secret) and/or one more short code (with its passkey)."""
        with self._lock:
            if consumer_key is not None:
                self.apps[consumer_key] = consumer_secret or ""
            if shortcode is not None:
                self.passkeys[shortcode] = passkey or ""

    def add_fault(self, status: int, count: int, endpoint: str | None) -> None:
        """Answer the next ``count`` requests to ``endpoint`` (any, when None) with ``status``."""
        with self._lock:
            self.faults.append(Fault(status, count, endpoint))

    def clear_faults(self) -> None:
        """Forget every fault not yet served."""
        with self._lock:
            self.faults.clear()

    # -- requests, faults, tokens ---------------------------------------------------------------

    def arrive(self, endpoint: str) -> int | None:
        """Count a request to ``endpoint``; the status to fail it with, when a fault is due."""
        with self._lock:
            self.counts["requests"][endpoint] += 1
            for fault in self.faults:
                if fault.endpoint in (None, endpoint):
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self.faults.remove(fault)
                    self.counts["faults_served"] += 1
                    return fault.status
        return None

    def issue_token(self, consumer_key: str, consumer_secret: str) -> tuple[str, int] | None:
        """A new access token and its lifetime, or None when the key and secret are not an app's."""
        with self._lock:
            # Bytes, as compare_digest refuses strings with non-ASCII characters.
            if consumer_key not in self.apps or not secrets.compare_digest(self.apps[consumer_key].encode(),
                                                                           consumer_secret.encode()):
                return None
            token = secrets.token_urlsafe(21)
            self.tokens[token] = time.monotonic() + self.token_expires_in
            self.counts["tokens_issued"] += 1
            return token, self.token_expires_in

    def token_valid(self, token: str) -> bool:
        """Whether ``token`` was issued here and has not expired."""
        with self._lock:
            expiry = self.tokens.get(token)
            return expiry is not None and time.monotonic() < expiry

    def password_valid(self, shortcode: str, password: str, timestamp: str) -> bool | None:
        """Whether ``password`` is base64(shortcode + passkey + timestamp); None for an unknown short code."""
        with self._lock:
            passkey = self.passkeys.get(shortcode)
        if passkey is None:
            return None
        expected = base64.b64encode(f"{shortcode}{passkey}{timestamp}".encode()).decode()
        return secrets.compare_digest(expected.encode(), password.encode())

    # -- STK Push -----------------------------------------------------------------------------

    def push(self, request: dict[str, Any]) -> Push:
        """Accept a validated STK Push: decide its outcome and schedule its callback."""
        now = time.monotonic()
        with self._lock:
            scenario = decide(self.mix, self.rng, request["AccountReference"], request["TransactionDesc"])
            moment = dt.datetime.now(EAT)
            merchant_id = f"{self.rng.randint(10000, 99999)}-{self.rng.randint(10**7, 10**8 - 1)}-1"
            checkout_id = f"ws_CO_{moment:%d%m%Y%H%M%S}{self.rng.randint(10**8, 10**9 - 1)}"
            receipt = daraja.receipt(self.rng)
            amount, phone = Decimal(str(request["Amount"])), str(request["PhoneNumber"])
            body = daraja.build("stk", daraja.Options(result_code=scenario.result_code, amount=amount, phone=phone),
                                now=moment)
            callback = body["Body"]["stkCallback"]
            callback["MerchantRequestID"], callback["CheckoutRequestID"] = merchant_id, checkout_id
            for item in callback.get("CallbackMetadata", {}).get("Item", []):
                if item["Name"] == "MpesaReceiptNumber":
                    item["Value"] = receipt
            fate = "drop" if scenario.fate == "timeout" else scenario.fate
            push = Push(checkout_id, merchant_id, str(request["BusinessShortCode"]), request["CallBackURL"], amount,
                        phone, receipt, scenario, now + scenario.delay,
                        "dropped" if fate == "drop" else "scheduled", body)
            self.pushes[checkout_id] = push
            if scenario.result_code == "0":
                self.receipts[receipt] = {"amount": amount, "phone": phone}
            if fate == "drop":
                self.counts["callbacks"]["dropped"] += 1
            late_delay = max(self.mix.late_delay, scenario.delay)
        if fate != "drop":
            self.dispatcher.schedule(late_delay if fate == "late" else scenario.delay,
                                     lambda: self._send_push(push, scheduled=True))
        return push

    def find_push(self, checkout_id: str) -> Push | None:
        """The STK Push of ``checkout_id``, if this sandbox accepted it."""
        with self._lock:
            return self.pushes.get(checkout_id)

    def all_pushes(self) -> list[dict[str, Any]]:
        """What the control API shows of every STK Push, oldest first."""
        now = time.monotonic()
        with self._lock:
            return [p.public(now) for p in self.pushes.values()]

    def send_push_now(self, push: Push) -> int | None:
        """Send ``push``'s callback now (a late one for a dropped push, or again); the receiver's status."""
        return self._send_push(push, scheduled=False)

    def _send_push(self, push: Push, scheduled: bool) -> int | None:
        with self._lock:
            if scheduled and push.callback != "scheduled":
                return None  # already sent by hand
        status = self.post("stk", push.callback_url, push.body)
        with self._lock:
            push.callback = "sent" if status is not None and 200 <= status < 300 else "failed"
        return status

    @contextlib.contextmanager
    def querying(self, checkout_id: str) -> Iterator[float]:
        """Count a query of ``checkout_id`` while it runs (and the most at once); yields the latency to add."""
        with self._lock:
            self.counts["queries"][checkout_id] += 1
            self.in_flight[checkout_id] += 1
            most = self.counts["max_concurrent_queries"]
            most[checkout_id] = max(most.get(checkout_id, 0), self.in_flight[checkout_id])
            latency = self.query_latency
        try:
            yield latency
        finally:
            with self._lock:
                self.in_flight[checkout_id] -= 1

    # -- result APIs and C2B --------------------------------------------------------------------

    def result_request(self, kind: str, fields: tuple[object, ...], options: daraja.Options,
                       result_url: str, timeout_url: str, originator: str | None = None,
                       about: Payment | None = None, receipt: str | None = None) -> dict[str, str]:
        """Accept a Transaction Status or B2C request (``kind`` ``status`` or ``b2c``): its ids, result scheduled.

        ``originator`` is the caller's OriginatorConversationID (B2C v3), a new one otherwise. A B2C payment
        is remembered whatever its callback's fate (a QueueTimeOut or a dropped result included), so a status
        query finds it. A status query reports ``about`` (a B2C payment) when it names one, else the
        transaction ``receipt`` (a sandbox STK Push's, or one the sandbox never made).
        """
        with self._lock:
            scenario = decide(self.mix, self.rng, *fields)
            originator = originator or f"{self.rng.randint(1000, 9999)}-{self.rng.randint(10**6, 10**7 - 1)}-1"
            conversation = f"AG_{dt.datetime.now(EAT):%Y%m%d}_{self.rng.getrandbits(80):020x}"
            transaction = about.receipt if about else receipt or daraja.receipt(self.rng)
            if kind == "b2c":
                payment = Payment(originator, conversation, transaction, scenario.result_code, options.amount,
                                  options.phone, options.shortcode)
                for key in (originator, conversation, transaction):
                    self.payments[key] = payment
            if scenario.fate == "drop":
                self.counts["callbacks"]["dropped"] += 1
            late_delay = max(self.mix.late_delay, scenario.delay)
        if scenario.fate == "timeout":
            body = daraja.build(f"{kind}-timeout", daraja.Options(result_code="SFC_IC0003"))
            url = timeout_url
        else:
            body = daraja.build(f"{kind}-result", dataclasses.replace(options, result_code=scenario.result_code))
            url = result_url
        result = body["Result"]
        result["OriginatorConversationID"], result["ConversationID"] = originator, conversation
        if result["TransactionID"]:
            result["TransactionID"] = transaction
            for parameter in result.get("ResultParameters", {}).get("ResultParameter", []):
                if parameter["Key"] in ("TransactionReceipt", "ReceiptNo"):
                    parameter["Value"] = transaction
                elif parameter["Key"] == "TransactionStatus" and about is not None:
                    parameter["Value"] = "Completed" if about.result_code == "0" else "Failed"
        if scenario.fate != "drop":
            self.dispatcher.schedule(late_delay if scenario.fate == "late" else scenario.delay,
                                     lambda: self.post(f"{kind}-{'timeout' if scenario.fate == 'timeout' else 'result'}",
                                                       url, body))
        return {"OriginatorConversationID": originator, "ConversationID": conversation}

    def find_payment(self, *keys: str) -> Payment | None:
        """The B2C payment one of ``keys`` names (its OriginatorConversationID, ConversationID or receipt)."""
        with self._lock:
            return next((self.payments[key] for key in keys if key in self.payments), None)

    def count_status_query(self, asked: str) -> None:
        """Count a Transaction Status query of ``asked`` (the TransactionID, else OriginalConversationID given)."""
        with self._lock:
            self.counts["status_queries"][asked] += 1

    def known_receipt(self, receipt: str) -> dict[str, Any] | None:
        """The amount and phone of a successful payment this sandbox made, by its receipt."""
        with self._lock:
            return self.receipts.get(receipt)

    def register_c2b(self, shortcode: str, urls: dict[str, str]) -> None:
        """Remember a short code's C2B ValidationURL, ConfirmationURL and ResponseType."""
        with self._lock:
            self.c2b_urls[shortcode] = urls

    def c2b_urls_of(self, shortcode: str) -> dict[str, str] | None:
        """The C2B URLs registered for ``shortcode``."""
        with self._lock:
            return self.c2b_urls.get(shortcode)

    def simulate_c2b(self, urls: dict[str, str], body: dict[str, Any]) -> None:
        """After the callback delay, call the ValidationURL, then the ConfirmationURL as Daraja would."""
        with self._lock:
            delay = self.mix.callback_delay

        def run() -> None:
            if urls.get("ValidationURL"):
                status, answer = self.post_for_answer("c2b-validation", urls["ValidationURL"], body)
                if status is not None and 200 <= status < 300 and isinstance(answer, dict):
                    if str(answer.get("ResultCode", "0")) != "0":
                        with self._lock:
                            self.counts["callbacks"]["c2b_rejected"] += 1
                        return
                elif urls.get("ResponseType", "Completed").lower() == "cancelled":
                    return
            self.post("c2b-confirmation", urls["ConfirmationURL"], body)

        self.dispatcher.schedule(delay, run)

    # -- callbacks ------------------------------------------------------------------------------

    def post(self, kind: str, url: str, body: dict[str, Any]) -> int | None:
        """POST a callback as Safaricom does (JSON, no signature); the receiver's status, None if unreachable."""
        return self.post_for_answer(kind, url, body)[0]

    def post_for_answer(self, kind: str, url: str, body: dict[str, Any]) -> tuple[int | None, Any]:
        """POST a callback; the receiver's status and its JSON answer (None for either when missing)."""
        status, answer, error = None, None, None
        try:
            response = requests.post(url, json=body, timeout=self.settings.callback_timeout)
            status = response.status_code
            with contextlib.suppress(ValueError):
                answer = response.json()
        except requests.RequestException as exc:
            error = type(exc).__name__
        ok = status is not None and 200 <= status < 300
        # The host only: a callback URL's path may hold a secret (Payhook's carry the merchant's callback token).
        log.info("%s callback to %s: %s", kind, urlsplit(url).netloc, status or error)
        with self._lock:
            self.counts["callbacks"]["sent" if ok else "failed"] += 1
            self.callback_log.append({"kind": kind, "url": url, "status": status, "error": error,
                                      "at": dt.datetime.now(dt.timezone.utc).isoformat(), "body": body})
        return status, answer

    def counters(self) -> dict[str, Any]:
        """Every count, as the control API shows it."""
        with self._lock:
            counts = self.counts
            return {"tokens_issued": counts["tokens_issued"], "requests": dict(counts["requests"]),
                    "faults_served": counts["faults_served"], "queries": dict(counts["queries"]),
                    "max_concurrent_queries": dict(counts["max_concurrent_queries"]),
                    "status_queries": dict(counts["status_queries"]),
                    "callbacks": {"sent": 0, "failed": 0, "dropped": 0, "c2b_rejected": 0, **counts["callbacks"],
                                  "pending": self.dispatcher.pending()}}

    def callbacks(self) -> list[dict[str, Any]]:
        """The callbacks sent (or tried), oldest first."""
        with self._lock:
            return list(self.callback_log)
